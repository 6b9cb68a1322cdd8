"""Reading the files configuration names (the policy file, the env file, CA bundles)."""

from __future__ import annotations

from pathlib import Path


def is_file(path: Path) -> bool:
    """Like ``Path.is_file``, but a name the OS refuses (too long, NUL) is just not a file."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def read_text(path: Path) -> str:
    """The file as text; a leading byte-order mark (Windows editors write one) is dropped.

    Raises OSError, or ValueError for a name the OS refuses or bytes that are not UTF-8.
    """
    return path.read_text(encoding="utf-8-sig")


def read_error(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"it is not UTF-8 text: byte {exc.start} is {exc.object[exc.start]:#04x}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)
