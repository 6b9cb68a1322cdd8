"""Running ``rotator`` with its stderr (and, if asked, stdout) on a pseudo-terminal."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading
import tty
from collections.abc import Mapping

from tests.support.emulated import Run


def run_on_terminal(args: list[str], env: Mapping[str, str], *, timeout: float = 180,
                    stdout_too: bool = False) -> Run:
    """Run rotator with stderr on a pseudo-terminal, and stdout a pipe (as in
    ``rotator scan | less``) or, with ``stdout_too``, the terminal as well (then the
    returned stdout is empty and stderr holds both).

    The terminal is raw, so it adds no carriage returns of its own: every ``\\r`` in
    the returned stderr was written by rotator.
    """
    master, slave = pty.openpty()
    tty.setraw(slave)
    proc = subprocess.Popen([sys.executable, "-m", "rotator", *args], env=dict(env),
                            stdin=subprocess.DEVNULL,
                            stdout=slave if stdout_too else subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        stdout, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
        os.close(master)
    return Run(proc.returncode, (stdout or b"").decode(),
               b"".join(chunks).decode(errors="replace"))
