"""The error of a configuration the user wrote; a module of its own so that the per-task option
modules (training/options) and training.config share it without importing each other."""
from __future__ import annotations


class ConfigError(ValueError):
    """A configuration the user wrote cannot be used; the message says which key and why."""


__all__ = ["ConfigError"]
