"""Every deployment file is explained in the operations guide; none holds a secret."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.deploy import DEPLOY, OPERATIONS, deploy_files
from tests.support.paths import REPO

FILES = deploy_files()


def test_there_are_deployment_files() -> None:
    assert len(FILES) >= 10


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_deploy_file_is_referenced_from_the_guide(path: Path) -> None:
    guide = OPERATIONS.read_text(encoding="utf-8")
    assert str(path.relative_to(REPO)) in guide


def test_guide_links_resolve() -> None:
    guide = OPERATIONS.read_text(encoding="utf-8")
    for target in re.findall(r"\]\((\.\./[^)#]+)\)", guide):
        assert (OPERATIONS.parent / target).resolve().exists(), target


PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z ]+ )?PRIVATE KEY-----")
# `password: value`, `password = "value"`, `PASSWORD=value`, also client secrets.
ASSIGNED = re.compile(
    r"""(?ix)
    (?P<key>[\w.-]*(?:password|passwd|client[_-]?secret|secret[_-]?value|access[_-]?key)[\w.-]*)
    \s*[:=]\s*
    (?P<value>"[^"]*"|'[^']*'|[^\s#,;]+)
    """
)
# Values that are references or placeholders, not secrets.
HARMLESS = re.compile(
    r"""(?x)^(
        ["']?["']?                          # empty
      | ["']?<[^>]+>["']?                   # <placeholder>
      | [A-Za-z_][\w.]*(\(\))?              # a reference: postgresAdminPassword, identity.id
      | ["']?(Enabled|Disabled)["']?        # switches
    )$"""
)
# Entra client secrets look like 3 chars, '8Q~' (or similar), then 31+ characters.
CLIENT_SECRET = re.compile(r"\b[A-Za-z0-9_\-.]{3}\dQ~[A-Za-z0-9_\-.~]{31,}\b")


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_no_secret_in_deploy_files(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert not PRIVATE_KEY.search(text)
    assert not CLIENT_SECRET.search(text)
    for lineno, line in enumerate(text.splitlines(), start=1):
        for match in ASSIGNED.finditer(line):
            value = match.group("value").rstrip(",)")
            assert HARMLESS.match(value), f"{path.name}:{lineno}: {match.group(0)!r}"
        # A URL with an inline password other than a <placeholder>.
        for userinfo in re.findall(r"://[^/\s:@]+:([^@\s/]+)@", line):
            assert userinfo.startswith("<") or userinfo.startswith("${"), f"{path.name}:{lineno}"


def test_the_secret_checks_catch_secrets() -> None:
    assert PRIVATE_KEY.search("-----BEGIN RSA " "PRIVATE KEY-----")
    assert not HARMLESS.match(ASSIGNED.search('password: "hunter2hunter2"').group("value"))  # type: ignore[union-attr]
    assert not HARMLESS.match(ASSIGNED.search("AZURE_CLIENT_SECRET=abc.def~ghi").group("value"))  # type: ignore[union-attr]
    assert CLIENT_SECRET.search("x" * 3 + "8Q~" + "a" * 34)
