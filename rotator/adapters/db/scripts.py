"""Where the migration scripts are, and whether a database is already at their head —
answered without importing Alembic, so read-only commands on a current database start
fast (Alembic's import and environment cost more than the command itself).

The migration scripts live in ``migrations/`` beside the ``rotator`` package in a
source checkout or an editable install. A wheel carries a copy as data files,
installed under ``<prefix>/share/rotator/migrations`` (see pyproject.toml's
``[tool.setuptools.data-files]``); it is found through the distribution's
RECORD, so any install scheme (venv, ``--user``, ``--prefix``) works.
A source checkout wins, so an editable install always runs the live scripts.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path, PurePosixPath

import sqlalchemy as sa


class MigrationsNotFound(RuntimeError):
    pass


# Where a wheel installs the scripts, relative to the installation prefix.
INSTALLED_MIGRATIONS = PurePosixPath("share/rotator/migrations")


def migrations_dir() -> Path:
    """The migration scripts: a source checkout's ``migrations/``, else the installed copy."""
    candidates = list(_candidates())
    for location in candidates:
        if (location / "env.py").is_file():
            return location
    tried = ", ".join(str(c) for c in candidates)
    raise MigrationsNotFound(
        f"no Alembic migrations found (looked in {tried}): install rotator from its wheel "
        "or a source checkout, or pass script_location= the migrations directory"
    )


def _candidates() -> Iterator[Path]:
    # rotator/adapters/db/migrate.py -> the directory holding the ``rotator`` package.
    root = Path(__file__).resolve().parents[3]
    # Only a source checkout (it has pyproject.toml): site-packages may hold someone
    # else's top-level ``migrations`` directory.
    if (root / "pyproject.toml").is_file():
        yield root / "migrations"
    yield from _installed()
    yield Path(sys.prefix) / INSTALLED_MIGRATIONS


def _installed() -> Iterator[Path]:
    """The directory the installed distribution's RECORD lists ``env.py`` in."""
    try:
        dist = metadata.distribution("rotator")
    except metadata.PackageNotFoundError:
        return
    target = (*INSTALLED_MIGRATIONS.parts, "env.py")
    for file in dist.files or ():
        if tuple(file.parts[-len(target) :]) == target:
            yield Path(str(dist.locate_file(file))).resolve().parent



# The two assignments every script under versions/ starts with (script.py.mako).
_REVISION = re.compile(r'^revision(?:: [^=]+)? = "([^"]+)"$', re.M)
_DOWN_REVISION = re.compile(r'^down_revision(?:: [^=]+)? = (None|"([^"]+)")$', re.M)


def script_head(location: Path | None = None) -> str | None:
    """The single head revision of the scripts, read from their text; ``None`` when it
    cannot be told that way (a branch, a merge, a script not in the usual form) — the
    caller then asks Alembic, which knows every case."""
    versions = (location or migrations_dir()) / "versions"
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in versions.glob("*.py"):
        text = script.read_text(encoding="utf-8")
        rev, down = _REVISION.findall(text), _DOWN_REVISION.findall(text)
        if len(rev) != 1 or len(down) != 1:
            return None
        revisions.add(rev[0])
        if down[0][1]:
            parents.add(down[0][1])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def database_revision(engine: sa.Engine) -> str | None:
    """The revision recorded in the database; ``None`` when it was never migrated."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        rows = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    return rows[0] if len(rows) == 1 else None


def is_current(engine: sa.Engine) -> bool:
    """Whether the database is known to be at the scripts' head without running Alembic."""
    head = script_head()
    return head is not None and database_revision(engine) == head
