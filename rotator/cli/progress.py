"""A one-line status on stderr for the person at the terminal, redrawn in place.

Drawn only when stderr is a terminal and the command was not asked for JSON, so
scripts, pipes and logs never see it. A background thread redraws it a few times a
second at most, so the elapsed time moves even while the command waits on one call,
and however fast the work reports, the terminal is not flooded. It uses nothing but
a carriage return and spaces, so it works on any terminal, colour or not.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

# At most this many redraws a second.
REDRAWS_PER_SECOND = 4


def elapsed_text(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


class StatusLine:
    """``render()`` is called on the drawing thread; it must only read plain values."""

    def __init__(self, stream: TextIO | None, *, interval: float = 1 / REDRAWS_PER_SECOND,
                 clock: Callable[[], float] = time.monotonic) -> None:
        # None: not drawn at all (not a terminal, or JSON was asked for).
        self.stream = stream
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self._render: Callable[[], str] | None = None
        self._drawn = 0  # characters on the line now
        self._last_draw = float("-inf")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_stderr(cls, *, as_json: bool = False) -> StatusLine:
        stream = sys.stderr
        isatty = getattr(stream, "isatty", None)
        drawn = not as_json and isatty is not None and isatty()
        return cls(stream if drawn else None)

    @property
    def enabled(self) -> bool:
        return self.stream is not None

    def elapsed(self) -> float:
        return self.clock() - self.started

    # -- drawing ---------------------------------------------------------------
    def _write(self, text: str) -> None:
        assert self.stream is not None
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # the terminal went away: stop drawing
            self.stream = None

    def _draw(self, *, throttled: bool = False) -> None:
        with self._lock:
            if self.stream is None or self._render is None:
                return
            now = self.clock()
            # A little slack, so the ticking thread is not skipped by its own jitter.
            if throttled and now - self._last_draw < 0.9 * self.interval:
                return
            self._last_draw = now
            try:
                text = self._render()
            except Exception:  # noqa: BLE001 - a status line must never break the command
                return
            width = max(10, shutil.get_terminal_size((80, 24)).columns - 1)
            text = text.replace("\n", " ")[:width]
            self._write("\r" + text + " " * max(0, self._drawn - len(text)))
            self._drawn = len(text)

    def _erase(self) -> None:
        if self.stream is not None and self._drawn:
            self._write("\r" + " " * self._drawn + "\r")
        self._drawn = 0

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._draw(throttled=True)

    # -- what commands use -----------------------------------------------------
    def show(self, render: Callable[[], str]) -> None:
        """Draw ``render()`` now and keep redrawing it until :meth:`hide` or :meth:`close`."""
        if self.stream is None:
            return
        with self._lock:
            self._render = render
        self._draw()
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="status-line", daemon=True)
            self._thread.start()

    def touch(self) -> None:
        """Something changed: redraw now, unless the line was drawn a moment ago."""
        self._draw(throttled=True)

    def hide(self) -> None:
        with self._lock:
            self._render = None
            self._erase()

    def print_line(self, line: str) -> None:
        """A permanent line on the same stream: the status line steps aside for it."""
        with self._lock:
            self._erase()
            stream = self.stream or sys.stderr
            stream.write(line + "\n")
            stream.flush()
        self._draw()

    def close(self, final: str | None = None) -> None:
        """Stop drawing and erase the line; on a terminal, leave ``final`` in its place."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.hide()
        if final is not None and self.stream is not None:
            self.print_line(final)


@contextmanager
def status_line(*, as_json: bool = False) -> Iterator[StatusLine]:
    """A :class:`StatusLine` on stderr that is erased when the block ends, however it ends."""
    line = StatusLine.for_stderr(as_json=as_json)
    try:
        yield line
    finally:
        line.close()


@contextmanager
def phases(line: StatusLine, prefix: str) -> Iterator[Callable[[str], None]]:
    """Show ``prefix: what it does now · elapsed`` while the block runs; the block is
    handed the function that says what it does now (each change is drawn at once:
    there are only a few)."""
    began = line.clock()
    doing = ["starting"]

    def now_doing(what: str) -> None:
        doing[0] = what
        line.show(lambda: f"{prefix}: {doing[0]} · {elapsed_text(line.clock() - began)}")

    try:
        yield now_doing
    finally:
        line.hide()
