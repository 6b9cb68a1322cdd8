"""The deployment file checks (their helpers are in ``tests/support/deploy.py``)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def yaml_module() -> Any:
    import yaml  # a dev dependency: missing means the environment is broken, not a skip

    return yaml
