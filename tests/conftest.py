pytest_plugins = ["authgate.testing", "authgate.testing.postgres", "authgate.testing.redis"]
