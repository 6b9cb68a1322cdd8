"""System tools the suite runs. `make test` installs them (tests/prepare-machine.sh).

A test whose tool is missing fails with the command that installs it: a skipped test
would be a silent gap in the gate, and the README promises that `make test` checks
everything.
"""

from __future__ import annotations

import shutil

import pytest


def require_tool(*names: str, package: str) -> str:
    """The path of the first of `names` on PATH; fails the test when none is there."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        f"{names[0]} is needed by this test and was not found on PATH; `make test` installs "
        f"it, or run: apt-get install -y {package}",
        pytrace=False,
    )
