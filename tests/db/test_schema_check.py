"""Read-only commands on a current database skip Alembic; a database behind is still
migrated first. The head is read from the scripts' text, so it must agree with Alembic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from rotator.adapters.db import make_engine, migrate
from rotator.adapters.db.scripts import database_revision, is_current, script_head
from tests.support.databases import throwaway_pg_database

TENANT = "11111111-1111-1111-1111-111111111111"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'r.db'}"
    else:
        with throwaway_pg_database() as pg:
            yield pg


def test_the_head_read_from_the_scripts_is_alembics_head() -> None:
    assert script_head() == migrate.head_revision()


def test_a_branch_in_the_scripts_is_left_to_alembic(tmp_path: Path) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    for name, down in (("a", None), ("b", '"a"'), ("c", '"a"')):
        (versions / f"{name}.py").write_text(
            f'revision: str = "{name}"\ndown_revision: str | None = {down or "None"}\n')
    assert script_head(tmp_path) is None
    (versions / "c.py").write_text("# revision set in code\n")
    assert script_head(tmp_path) is None


def test_database_revision_follows_the_migrations(url: str) -> None:
    engine = make_engine(url, poolclass=sa.pool.NullPool)
    try:
        assert database_revision(engine) is None
        assert not is_current(engine)
        migrate.upgrade(url, "20261126_0001")
        assert database_revision(engine) == "20261126_0001"
        assert not is_current(engine)
        migrate.upgrade(url)
        assert is_current(engine)
    finally:
        engine.dispose()


def _status(url: str, tmp_path: Path) -> dict[str, object]:
    """`rotator status --json` in a fresh process, and whether it imported Alembic."""
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['rotator', 'status', '--json']\n"
        "try:\n"
        "    runpy.run_module('rotator', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print('ALEMBIC', 'alembic' in sys.modules, file=sys.stderr)\n"
    )
    env = {**os.environ, "ROTATOR_DATABASE_URL": url, "ROTATOR_TENANT_ID": TENANT}
    done = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=True)
    return {"alembic": "ALEMBIC True" in done.stderr, "out": json.loads(done.stdout)}


def test_status_on_a_current_database_does_not_import_alembic(url: str,
                                                              tmp_path: Path) -> None:
    migrate.upgrade(url)
    run = _status(url, tmp_path)
    assert run["alembic"] is False
    assert isinstance(run["out"], dict)


def test_status_on_a_database_behind_migrates_it_first(url: str, tmp_path: Path) -> None:
    migrate.upgrade(url, "20261126_0002")
    run = _status(url, tmp_path)
    assert run["alembic"] is True
    engine = make_engine(url, poolclass=sa.pool.NullPool)
    try:
        assert is_current(engine)
    finally:
        engine.dispose()
