"""Suite-wide settings.

Hypothesis runs derandomised here, so the suite is a gate that gives the same answer
on every run; new inputs are explored on purpose with
``pytest --hypothesis-profile=explore`` (and the fault campaign's own ``--seed``).
Every failure such a run finds is kept as an ``@example``.

``--strict-skips`` (which ``make test`` passes) fails the run when any test was
skipped: a test that did not run is a promise the gate did not keep. Tests that need a
system tool fail with the command that installs it (``tests/support/tools.py``).
"""

from __future__ import annotations

import pytest
from hypothesis import settings

settings.register_profile("gate", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile("gate")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--strict-skips",
        action="store_true",
        help="fail the run when any test is skipped (make test sets it)",
    )


def _skipped(config: pytest.Config) -> list[pytest.TestReport]:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not config.getoption("--strict-skips"):
        return []
    return list(reporter.stats.get("skipped", []))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if exitstatus == 0 and _skipped(session.config):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    skipped = _skipped(terminalreporter.config)
    if skipped:
        terminalreporter.section("skipped tests fail this run (--strict-skips)", red=True)
        for report in skipped:
            terminalreporter.line(f"{report.nodeid}: {report.longrepr}")
