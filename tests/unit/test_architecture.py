"""The architecture's rules that import contracts alone cannot state.

``lint-imports`` (pyproject.toml) checks which rotator packages may import which.
These tests add what it cannot see: that the pure core imports only the standard
library (any third-party package, not just the listed ones), and that the engine and
the alert logic load without the database, Graph or Azure SDKs at all.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import rotator

PACKAGE = Path(rotator.__file__).parent
HEAVY = ("sqlalchemy", "msgraph", "azure", "kiota_abstractions", "alembic", "psycopg")


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module)
    return roots


@pytest.mark.parametrize(
    "path", sorted((PACKAGE / "domain").glob("*.py")), ids=lambda p: p.name
)
def test_domain_imports_only_the_standard_library_and_itself(path: Path) -> None:
    outside = {
        name for name in _imported_roots(path)
        if name.split(".")[0] not in sys.stdlib_module_names
        and not (name == "rotator.domain" or name.startswith("rotator.domain."))
    }
    assert not outside, f"{path.name} imports {sorted(outside)}; rotator.domain stays pure"


@pytest.mark.parametrize("module", ["rotator.engine.driver", "rotator.engine.reconcile",
                                    "rotator.alerts.thresholds", "rotator.alerts.runner",
                                    "rotator.report.source", "rotator.api.http"])
def test_core_loads_without_database_graph_or_azure(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.strip()
    assert out == "[]", f"importing {module} loaded {out}"
