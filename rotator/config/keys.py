"""How a policy key is declared once, and the table of keys read back from the declarations.

A key is the field of the dataclass that holds its resolved value: the field gives
the key's name, type and built-in default, and :func:`key_field` (or :func:`key_spec`,
for a field without a default) puts its check and its help in the field's metadata.
Everything else -- which tables accept a key, the lists of allowed keys behind the
"did you mean" hints, the built-in defaults -- is derived with :func:`declared`.

The keys themselves are declared where their values live: ``AppDefaults``,
``AppPolicy`` and ``DaemonPolicy`` in :mod:`rotator.config.policy` (whose ``KEYS``
is the table of ``[defaults]`` and ``[[app]]`` keys), ``AlertsPolicy`` and
``ChannelPolicy`` in :mod:`rotator.config.alerts`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_T = TypeVar("_T")
_METADATA: Final = "rotator.config.key"


@dataclass(frozen=True, slots=True)
class KeySpec:
    """What a field's metadata says about the policy key the field holds."""

    check: Callable[[object], Any]  # returns the parsed value or raises ValueError(hint)
    help: str
    # The key as written in the policy file, when that is not the field's name.
    name: str | None = None
    # The kinds of table that accept the key (an [[alerts.channel]]'s type); None: every kind.
    only: frozenset[str] | None = None


def key_spec(
    check: Callable[[object], Any],
    *,
    help: str,
    name: str | None = None,
    only: frozenset[str] | None = None,
) -> Mapping[str, KeySpec]:
    """Field metadata that declares a policy key: ``field(metadata=key_spec(...))``."""
    return MappingProxyType({_METADATA: KeySpec(check, help, name, only)})


def key_field(
    default: _T,
    check: Callable[[object], _T],
    *,
    help: str,
    name: str | None = None,
    only: frozenset[str] | None = None,
) -> _T:
    """A dataclass field that declares a policy key with its built-in default."""
    return field(default=default, metadata=key_spec(check, help=help, name=name, only=only))


@dataclass(frozen=True, slots=True)
class Key:
    """One policy key as declared: its name, check, default and help, and where it goes."""

    name: str
    attr: str  # the dataclass field that holds its value
    check: Callable[[object], Any]
    default: Any  # None for a field without one (required, or worked out by the loader)
    help: str
    in_defaults: bool = False  # [defaults] may set it
    in_app: bool = False  # [[app]] may set it
    only: frozenset[str] | None = None


def declared(
    cls: type[DataclassInstance], *, in_defaults: bool = False, in_app: bool = False
) -> tuple[Key, ...]:
    """The policy keys the dataclass ``cls`` declares, in field order."""
    keys = []
    for f in fields(cls):
        found = f.metadata.get(_METADATA)
        if found is None:
            continue
        default = None if f.default is MISSING else f.default
        keys.append(
            Key(found.name or f.name, f.name, found.check, default, found.help,
                in_defaults, in_app, found.only)
        )
    return tuple(keys)
