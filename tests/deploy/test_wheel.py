"""The wheel carries the migrations: build it, install it as the image does, migrate."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Mapping
from pathlib import Path

import pytest

from rotator.adapters.db import migrate
from tests.support.paths import REPO

pytestmark = pytest.mark.timeout(180)


def _build_backend_ready() -> str | None:
    """Why the dev environment cannot build the wheel offline, or None."""
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return "setuptools is not installed"
    major = int(version.split(".")[0])
    if major < 69:  # pyproject.toml's [build-system]; data-files globs need it
        return f"setuptools {version} is older than the build-system's >=69"
    if major < 70:
        try:
            importlib.metadata.version("wheel")
        except importlib.metadata.PackageNotFoundError:
            return "setuptools < 70.1 needs the wheel package to build wheels"
    return None


def _clean_env(**extra: str) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(PYTHONDONTWRITEBYTECODE="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.update(extra)
    return env


def _run(args: list[str], env: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args, env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = _build_backend_ready()
    if reason:
        pytest.fail(f"cannot build the wheel offline: {reason}; `make install` sets up "
                    "the dev environment that can", pytrace=False)
    # Build from a copy: the build must not leave build/ or *.egg-info in the checkout.
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("rotator", "migrations"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    out = tmp_path_factory.mktemp("wheels")
    _run(
        [
            sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
            "--no-index", "--wheel-dir", str(out), str(src),
        ],
        _clean_env(),
        src,
    )
    (built,) = out.glob("rotator-*.whl")
    return built


def test_wheel_ships_every_migration(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    prefix = next(n.split("/share/")[0] for n in names if "/share/rotator/migrations/" in n)
    data = f"{prefix}/share/rotator/migrations/"
    assert f"{data}env.py" in names and f"{data}script.py.mako" in names
    versions = sorted(p.name for p in (REPO / "migrations" / "versions").glob("*.py"))
    assert versions
    for name in versions:
        assert f"{data}versions/{name}" in names, f"{name} is missing from the wheel"
    assert "rotator/py.typed" in names
    assert not any(n.startswith("migrations/") for n in names)


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding only the wheel; dependencies come from the dev environment."""
    root = tmp_path_factory.mktemp("venv") / "v"
    _run([sys.executable, "-m", "venv", "--without-pip", str(root)], _clean_env(), root.parent)
    python = root / "bin" / "python"
    _run(
        [
            sys.executable, "-m", "pip", "--python", str(python), "install",
            "--no-deps", "--no-index", "--no-compile", str(wheel),
        ],
        _clean_env(),
        root.parent,
    )
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout.strip()
    )
    # Plain path entries (not a site dir): the dev environment's own .pth files,
    # such as an editable install of rotator, are not processed.
    (site / "zz_dev_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return root


def test_installed_entry_point_runs(venv: Path, tmp_path: Path) -> None:
    result = _run([str(venv / "bin" / "rotator"), "--help"], _clean_env(), tmp_path)
    assert "db" in result.stdout and "Usage" in result.stdout
    where = _run(
        [
            str(venv / "bin" / "python"), "-c",
            "import rotator, rotator.adapters.db.migrate as m; "
            "print(rotator.__file__); print(m.migrations_dir())",
        ],
        _clean_env(),
        tmp_path,
    ).stdout.splitlines()
    assert Path(where[0]).is_relative_to(venv), "rotator must come from the wheel"
    assert Path(where[1]) == (venv / "share" / "rotator" / "migrations").resolve()


def test_installed_db_upgrade_migrates_sqlite(venv: Path, tmp_path: Path) -> None:
    db = tmp_path / "state" / "rotator.db"
    db.parent.mkdir()
    env = _clean_env(ROTATOR_DATABASE_URL=f"sqlite:///{db}")
    result = _run([str(venv / "bin" / "rotator"), "db", "upgrade"], env, tmp_path)
    assert "head" in result.stdout
    with sqlite3.connect(db) as conn:
        (revision,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert revision == migrate.head_revision(REPO / "migrations")
    assert len(tables) > 1
    # Idempotent: a restart of the container runs it again.
    _run([str(venv / "bin" / "rotator"), "db", "upgrade"], env, tmp_path)


def test_source_checkout_still_uses_the_repository_migrations() -> None:
    assert migrate.migrations_dir() == REPO / "migrations"
    assert (REPO / "alembic.ini").is_file()
    ini = (REPO / "alembic.ini").read_text(encoding="utf-8")
    assert "script_location = %(here)s/migrations" in ini
