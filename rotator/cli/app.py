"""What every command shares: config loading, output, and exits with a message."""

from __future__ import annotations

import gc
import json
import math
import os
import re
import sys
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, TypeVar

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


_ROTATION_ID = re.compile(r"^[0-9a-f]{32}$")


def rotation_id(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A rotation id: 32 lower-case hex characters, as `rotator status` shows them."""
    if value is None or _ROTATION_ID.fullmatch(value.strip()):
        return None if value is None else value.strip()
    raise click.BadParameter(
        f"{value!r} is not a rotation id; expected 32 lower-case hex characters like "
        "0f6c1a2b3c4d4e5f8a9b0c1d2e3f4a5b (see `rotator status` or `rotator history --json`)",
        ctx, param,
    )


MAX_DAYS = 36_500

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
_SINCE_HELP = ("an ISO date or date and time (2026-11-20, 2026-11-20T08:00Z; UTC when no "
               "offset is given) or a duration back from now (90m, 12h, 7d, 2w)")


def parse_since(text: str, now: datetime) -> datetime:
    """``--since``: an ISO date/time (UTC unless it says otherwise) or a duration ago.

    Raises ValueError with the reason when it is neither, or not within a century.
    """
    value = text.strip()
    relative = _RELATIVE.fullmatch(value.lower())
    if relative is not None:
        seconds = float(relative.group(1)) * _UNIT_SECONDS[relative.group(2)]
        if seconds > MAX_DAYS * 86_400:
            raise ValueError(f"{text!r} reaches back more than {MAX_DAYS} days")
        return now - timedelta(seconds=seconds)
    try:
        # fromisoformat takes "Z" from Python 3.11 on; a space for the T as well.
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{text!r} is not {_SINCE_HELP}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if abs(when - now) > timedelta(days=MAX_DAYS):
        raise ValueError(f"{text!r} is more than {MAX_DAYS} days from now")
    if when > now:
        raise ValueError(f"{text!r} is in the future")
    return when.astimezone(UTC)


def since(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_since(value, datetime.now(UTC))
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


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


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a short command starts up: importing
    SQLAlchemy and pydantic builds thousands of objects and runs it dozens of times with
    nothing to free, about a tenth of `rotator status`'s CPU. On again before any rows
    are read, so what a command holds never grows unchecked."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class CliApp:
    def __init__(self, *, as_json: bool = False, logs: bool = True) -> None:
        self.as_json = as_json
        # Read-only commands log nothing, and structlog's import (rich, pygments, attrs
        # come with it) is a sixth of their start-up: they pass logs=False.
        self.logs = logs
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

            try:
                self._loaded = load()
            except ConfigError as exc:
                self.abort(str(exc), EXIT_USAGE)
            if not self.logs:
                return self._loaded
            from rotator.logs import configure

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
        # Here, not at the top: the read-only commands never start an event loop.
        import asyncio

        from rotator.config import ConfigError

        try:
            return asyncio.run(coro)
        except ConfigError as exc:  # found while wiring the clients, before any call
            self.abort(str(exc), EXIT_USAGE)


def colour_on(stream: TextIO | None = None) -> bool:
    """Colour only for a person at a terminal, and never when NO_COLOR is set
    (https://no-color.org), whatever its value."""
    stream = stream if stream is not None else sys.stdout
    if "NO_COLOR" in os.environ:
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


def table(rows: list[list[str]], headers: list[str],
          paint: Callable[[int, str], str] | None = None) -> str:
    """Aligned columns; ``paint(row_index, line)`` may style a whole body line (after
    padding, so escape codes never upset the widths)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
    out = [line(headers), line(["-" * w for w in widths])]
    out.extend(paint(i, line(r)) if paint else line(r) for i, r in enumerate(rows))
    return "\n".join(out)
