"""Errors the core raises at start-up."""

from __future__ import annotations


class ConfigurationError(Exception):
    """A setting or plugin selection is wrong; start-up stops with this message."""
