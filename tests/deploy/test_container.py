"""The Dockerfile and its entrypoint, checked statically and by running the script."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from rotator.config import Settings
from tests.support.deploy import DEPLOY, METRICS_PORT
from tests.support.paths import REPO

DOCKERFILE = DEPLOY / "container" / "Dockerfile"
ENTRYPOINT = DEPLOY / "container" / "entrypoint.sh"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    stage: int


def parse(path: Path) -> list[Instruction]:
    """Instructions with continuations joined and comments dropped, tagged with their stage."""
    logical: list[str] = []
    current = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    result: list[Instruction] = []
    stage = -1
    for text in logical:
        keyword, _, args = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        result.append(Instruction(keyword, args.strip(), stage))
    return result


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse(DOCKERFILE)


def _final(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def test_multi_stage_build_installs_the_wheel_into_a_venv(instructions: list[Instruction]) -> None:
    froms = [i for i in instructions if i.keyword == "FROM"]
    assert len(froms) >= 2
    assert re.search(r"\bAS\s+build\b", froms[0].args, re.IGNORECASE)
    assert all("slim" in f.args or "${PYTHON_IMAGE}" in f.args for f in froms)
    base = next(i for i in instructions if i.keyword == "ARG" and i.args.startswith("PYTHON_IMAGE"))
    assert "slim" in base.args
    build_runs = " ".join(i.args for i in instructions if i.stage == 0 and i.keyword == "RUN")
    assert "pip wheel" in build_runs and "--no-deps" in build_runs
    assert "python -m venv /opt/rotator" in build_runs
    assert "share/rotator/migrations/env.py" in build_runs  # the wheel carries the migrations
    final = _final(instructions)
    assert any(
        i.keyword == "COPY" and "--from=build" in i.args and "/opt/rotator" in i.args
        for i in final
    )
    # The final stage builds nothing itself.
    assert not any(i.keyword == "RUN" and "pip" in i.args for i in final)


def test_runs_as_a_fixed_non_root_user(instructions: list[Instruction]) -> None:
    users = [i for i in _final(instructions) if i.keyword == "USER"]
    assert users, "the final stage must set USER"
    user = users[-1].args.split(":")[0]
    assert user not in ("root", "0")
    assert user.isdigit(), "a numeric uid lets Kubernetes' runAsNonRoot verify it"


def test_healthcheck_uses_python_on_healthz(instructions: list[Instruction]) -> None:
    checks = [i for i in _final(instructions) if i.keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    check = checks[0].args
    assert "/healthz" in check
    assert "python" in check and "curl" not in check and "wget" not in check
    assert str(METRICS_PORT) in check and "ROTATOR_HTTP_PORT" in check


def test_exposes_the_port_the_service_listens_on(instructions: list[Instruction]) -> None:
    assert Settings.model_fields["http_port"].default == METRICS_PORT
    exposed = {
        port.split("/")[0]
        for i in _final(instructions)
        if i.keyword == "EXPOSE"
        for port in i.args.split()
    }
    assert exposed == {str(METRICS_PORT)}
    env = " ".join(i.args for i in _final(instructions) if i.keyword == "ENV")
    assert f"ROTATOR_HTTP_PORT={METRICS_PORT}" in env


def test_read_only_root_file_system_friendly(instructions: list[Instruction]) -> None:
    env = " ".join(i.args for i in _final(instructions) if i.keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "HOME=/tmp" in env and "TMPDIR=/tmp" in env
    build_runs = " ".join(i.args for i in instructions if i.stage == 0 and i.keyword == "RUN")
    assert "compileall" in build_runs


def test_copy_sources_exist_and_pass_the_dockerignore(instructions: list[Instruction]) -> None:
    ignore = (DEPLOY / "container" / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    allowed = {line[1:].rstrip("/") for line in ignore.splitlines() if line.startswith("!")}
    for inst in instructions:
        if inst.keyword != "COPY" or "--from=" in inst.args:
            continue
        parts = [p for p in shlex.split(inst.args) if not p.startswith("--")]
        for source in parts[:-1]:
            assert (REPO / source).exists(), source
            assert source.rstrip("/") in allowed, f"{source} is excluded by the .dockerignore"


def test_entrypoint_migrates_then_serves(instructions: list[Instruction]) -> None:
    final = _final(instructions)
    entry = [i for i in final if i.keyword == "ENTRYPOINT"][-1].args
    cmd = [i for i in final if i.keyword == "CMD"][-1].args
    assert "/usr/local/bin/rotator-entrypoint" in entry
    assert "serve" in cmd
    assert any(
        i.keyword == "COPY"
        and "deploy/container/entrypoint.sh" in i.args
        and "/usr/local/bin/rotator-entrypoint" in i.args
        for i in final
    )
    text = ENTRYPOINT.read_text(encoding="utf-8")
    assert "rotator db upgrade" in text and 'exec rotator "$@"' in text


def _run_entrypoint(tmp_path: Path, *args: str, fail_upgrades: int = 0) -> list[str]:
    """Run the entrypoint with a stand-in ``rotator`` that logs its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "calls.log"
    counter = tmp_path / "failures"
    counter.write_text(str(fail_upgrades))
    fake = bin_dir / "rotator"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> "{log}"\n'
        'if [ "$1" = db ]; then\n'
        f'  n=$(cat "{counter}")\n'
        f'  if [ "$n" -gt 0 ]; then echo $((n - 1)) > "{counter}"; exit 1; fi\n'
        "fi\n"
        "exit 0\n"
    )
    fake.chmod(0o755)
    sleep = bin_dir / "sleep"
    sleep.write_text("#!/bin/sh\nexit 0\n")
    sleep.chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin"}
    subprocess.run(["sh", str(ENTRYPOINT), *args], env=env, check=True, timeout=30)
    return log.read_text().splitlines()


def test_entrypoint_behaviour(tmp_path: Path) -> None:
    a = tmp_path / "default"
    a.mkdir()
    assert _run_entrypoint(a) == ["db upgrade", "serve"]
    b = tmp_path / "retry"
    b.mkdir()
    assert _run_entrypoint(b, "serve", fail_upgrades=2) == [
        "db upgrade",
        "db upgrade",
        "db upgrade",
        "serve",
    ]
    c = tmp_path / "other"
    c.mkdir()
    assert _run_entrypoint(c, "status", "--json") == ["status --json"]


def test_entrypoint_is_valid_posix_shell() -> None:
    subprocess.run(["sh", "-n", str(ENTRYPOINT)], check=True, timeout=10)
    assert os.access(ENTRYPOINT, os.X_OK)
