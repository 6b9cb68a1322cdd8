"""A wrapper that keeps secret material out of reprs, logs and tracebacks."""

from __future__ import annotations

from typing import Final

_MASK: Final = "***"


class SecretValue:
    """Holds a secret string (client secret, PEM bundle) in memory only.

    ``str()``/``repr()``/``format()`` never reveal the value: a secret that ends
    up in an f-string, a log event or an exception message shows as ``***``.
    The value is only reachable through :meth:`reveal`, which makes every place
    that hands material to an SDK easy to find and review.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("SecretValue holds a str")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"SecretValue({_MASK})"

    def __str__(self) -> str:
        return _MASK

    def __format__(self, spec: str) -> str:
        return _MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretValue) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("SecretValue must not be pickled")
