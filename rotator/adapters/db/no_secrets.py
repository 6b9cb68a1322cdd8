"""The database layer's refusal to store a secret value, wherever it hides."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from rotator.domain.secret_value import SecretValue


class SecretInStore(TypeError):
    """A secret value was handed to the database layer, which must never store one."""


_SCALARS: frozenset[type] = frozenset({str, int, float, bool, type(None), datetime})


def reject_secrets(value: object, where: str) -> None:
    """Raise :class:`SecretInStore` if ``value`` is or contains a :class:`SecretValue`."""
    stack: list[object] = [value]
    while stack:
        item = stack.pop()
        # Exact-type fast path: this runs for every inventory field of every scan.
        if type(item) in _SCALARS:
            continue
        if isinstance(item, SecretValue):
            raise SecretInStore(f"{where}: a secret value must never be written to the database")
        if isinstance(item, dict | Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
