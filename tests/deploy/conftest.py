"""Shared helpers for the deployment file checks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
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


@pytest.fixture(scope="session")
def yaml_module() -> Any:
    import yaml  # a dev dependency: missing means the environment is broken, not a skip

    return yaml
