pytest_plugins = ["authgate.testing"]
