"""Plugins bundled with AuthGate, importable as ``authgate_plugins.<name>``.

Each is registered through its own entry point in the ``authgate`` group,
exactly like a third-party plugin.
"""
