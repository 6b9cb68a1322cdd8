"""What every command shares: config loading, output, and exits with a message."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

if TYPE_CHECKING:
    from rotator.adapters.db.repo import Store
    from rotator.bootstrap import Loaded

T = TypeVar("T")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class CliApp:
    def __init__(self, *, as_json: bool = False) -> None:
        self.as_json = as_json
        self._loaded: Loaded | None = None

    # -- exits ------------------------------------------------------------------
    def abort(self, message: str, code: int = EXIT_FAILED) -> NoReturn:
        click.echo(f"error: {message}", err=True)
        sys.exit(code)

    # -- configuration ----------------------------------------------------------
    def loaded(self) -> Loaded:
        if self._loaded is None:
            from rotator.bootstrap import load
            from rotator.config import ConfigError
            from rotator.logs import configure

            try:
                self._loaded = load()
            except ConfigError as exc:
                self.abort(str(exc), EXIT_USAGE)
            s = self._loaded.settings
            # Admin commands print their own progress; step logs only when asked for.
            level = s.log_level if "ROTATOR_LOG_LEVEL" in os.environ else "WARNING"
            configure(s.log_format, level)
        return self._loaded

    def store(self) -> Store:
        from rotator.bootstrap import open_store

        try:
            return open_store(self.loaded().settings)
        except Exception as exc:  # noqa: BLE001 - any database failure is reported, not traced
            self.abort(
                f"cannot open the database ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                "check ROTATOR_DATABASE_URL",
                EXIT_FAILED,
            )

    # -- output -----------------------------------------------------------------
    def emit_json(self, payload: Any) -> None:
        click.echo(json.dumps(payload, indent=2, sort_keys=False, default=str))

    def say(self, message: str) -> None:
        if not self.as_json:
            click.echo(message)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run(coro)


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
    out = [line(headers), line(["-" * w for w in widths])]
    out.extend(line(r) for r in rows)
    return "\n".join(out)
