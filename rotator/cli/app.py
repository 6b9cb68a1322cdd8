"""What every command shares: config loading, output, and exits with a message."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

if TYPE_CHECKING:
    from rotator.adapters.db import SqlStore
    from rotator.bootstrap import Loaded

T = TypeVar("T")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

_GUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


# Option checks are callbacks rather than ParamType subclasses: ParamType became
# generic in click 8.2, and a subscripted base would not import on click 8.1.
OptionCheck = Callable[[click.Context, click.Parameter, Any], Any]


def guid(what: str) -> OptionCheck:
    """A GUID (application id, key id), checked before anything runs, in lower case."""

    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is None or _GUID.fullmatch(value.strip()):
            return None if value is None else value.strip().lower()
        raise click.BadParameter(
            f"{value!r} is not {what}; expected a GUID like "
            "00000000-0000-0000-0000-000000000000", ctx, param
        )

    return check


MAX_DAYS = 36_500


def days(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """A finite number of days within a century either way (timedelta's range is not)."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number of days", ctx, param) from None
    if not math.isfinite(number) or abs(number) > MAX_DAYS:
        raise click.BadParameter(
            f"{value!r} is not a number of days between -{MAX_DAYS} and {MAX_DAYS}", ctx, param
        )
    return number


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

    def loaded_with_tenant(self) -> Loaded:
        """:meth:`loaded`, for commands that talk to the tenant: refuse before anything
        (even the database) is touched when the tenant is not configured."""
        from rotator.config import ConfigError

        loaded = self.loaded()
        try:
            loaded.settings.required_tenant_id()
        except ConfigError as exc:
            self.abort(str(exc), EXIT_USAGE)
        return loaded

    def store(self) -> SqlStore:
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
        from rotator.config import ConfigError

        try:
            return asyncio.run(coro)
        except ConfigError as exc:  # found while wiring the clients, before any call
            self.abort(str(exc), EXIT_USAGE)


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
    out = [line(headers), line(["-" * w for w in widths])]
    out.extend(line(r) for r in rows)
    return "\n".join(out)
