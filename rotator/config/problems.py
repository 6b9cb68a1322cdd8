"""Problems found in a policy file, each reported with the file's line number."""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rotator.config.errors import ConfigError

if TYPE_CHECKING:
    from rotator.config.keys import Key


class Lines:
    """Finds the line of a table or key in the policy text, for error messages."""

    _HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\"' -]+?)\s*\]\]?\s*(#.*)?$")

    def __init__(self, text: str) -> None:
        self._lines = text.splitlines()
        # (line number, table name, is array-of-tables) for every header.
        self._headers: list[tuple[int, str, bool]] = []
        for no, line in enumerate(self._lines, start=1):
            m = self._HEADER.match(line)
            if m:
                self._headers.append((no, m.group(1).strip().strip("\"'"), "[[" in line))

    def section(self, name: str, index: int = 0) -> tuple[int | None, int | None]:
        """(header line, line where the section ends) of the ``index``-th ``name`` table."""
        found = [i for i, (_, n, _) in enumerate(self._headers) if n == name]
        if index >= len(found):
            return None, None
        i = found[index]
        start = self._headers[i][0]
        end = self._headers[i + 1][0] if i + 1 < len(self._headers) else len(self._lines) + 1
        return start, end

    def key(self, section: str | None, key: str, index: int = 0) -> int | None:
        if section is None:
            start, end = 0, (self._headers[0][0] if self._headers else len(self._lines) + 1)
        else:
            header, stop = self.section(section, index)
            if header is None or stop is None:
                return None
            start, end = header, stop
        pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
        for no in range(start + 1 if section else 1, end):
            if pattern.match(self._lines[no - 1]):
                return no
        return start if section else None


class Problems:
    """Every problem found in one policy file, reported together by :meth:`raise_if_any`."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = Lines(text)
        self.items: list[str] = []

    def add(self, line: int | None, where: str, message: str) -> None:
        loc = f"{self.path}:{line}" if line else str(self.path)
        self.items.append(f"{loc}: {where}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            count = len(self.items)
            head = "1 problem" if count == 1 else f"{count} problems"
            raise ConfigError(f"policy file {self.path}: {head}:\n  " + "\n  ".join(self.items))


def suggest(key: str, allowed: tuple[str, ...]) -> str:
    """The hint for an unknown ``key``: the allowed key it is closest to, or all of them."""
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return "known keys: " + ", ".join(allowed)


def check_table_keys(
    raw: Mapping[str, Any],
    *,
    table: Mapping[str, Key],
    allowed: tuple[str, ...],
    problems: Problems,
    section: str,
    index: int,
    label: str,
    what: str,
    secret_keys: Collection[str],
    secret_hint: str,
) -> dict[str, Any] | None:
    """The checked values of one ``[[section]]`` table by field name, its ``type`` aside;
    ``None`` after reporting every key that is unknown, holds a secret, or is invalid."""
    values: dict[str, Any] = {}
    ok = True
    for key, value in raw.items():
        if key == "type":
            continue
        line = problems.lines.key(section, key, index)
        if key in secret_keys:
            problems.add(line, f"{label} key {key!r}",
                         f"secrets never go in the policy file; {secret_hint}")
            ok = False
        elif key not in allowed:
            problems.add(line, f"{label} key {key!r}",
                         f"not a {what} key; " + suggest(key, allowed))
            ok = False
        else:
            known = table[key]
            try:
                values[known.attr] = known.check(value)
            except ValueError as exc:
                problems.add(line, f"{label} key {key!r}", str(exc))
                ok = False
    return values if ok else None
