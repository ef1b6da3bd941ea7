pytest_plugins = ["authgate.testing", "authgate.testing.postgres"]
