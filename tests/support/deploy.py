"""The deployment files (``deploy/``, the operations guide) and walking what they load."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.paths import REPO

DEPLOY = REPO / "deploy"
OPERATIONS = REPO / "docs" / "operations.md"
METRICS_PORT = 9464


def deploy_files() -> list[Path]:
    return sorted(
        p for p in DEPLOY.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )


def walk(node: Any) -> Iterator[Any]:
    """Every mapping and list inside a loaded YAML/JSON document, depth first."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)
