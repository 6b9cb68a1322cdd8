"""The error configuration raises: the message names where the problem is and the fix."""

from __future__ import annotations


class ConfigError(Exception):
    """Configuration that cannot be used; the message says where and what to do."""
