"""The test layout's one rule (tests/support/__init__.py): no test imports a conftest or
another test module, and a directory's own helper modules are imported only from that
directory; what several directories share lives in tests/support."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return found


def test_no_test_imports_a_conftest_a_test_module_or_another_directorys_helpers() -> None:
    wrong = []
    for path in sorted(TESTS.rglob("*.py")):
        here = path.relative_to(TESTS).parts[0] if path.parent != TESTS else ""
        for module in _imports(path):
            parts = module.split(".")
            if parts[0] != "tests" or len(parts) < 2 or parts[1] == "support":
                continue
            last = parts[-1]
            if last == "conftest" or last.startswith("test_") or parts[1] != here:
                wrong.append(f"{path.relative_to(TESTS)} imports {module}")
    assert wrong == []
