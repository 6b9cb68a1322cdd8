"""Each policy key is declared once, as a dataclass field; the tables are read back from them."""

from __future__ import annotations

import dataclasses

import pytest

from rotator.config import (
    KEYS,
    AlertsPolicy,
    AppDefaults,
    AppPolicy,
    ChannelPolicy,
    DaemonPolicy,
    HookPolicy,
)
from rotator.config.keys import declared


@pytest.mark.parametrize(
    ("cls", "undeclared"),
    [
        (AppDefaults, set()),
        # vault_url is AppDefaults' key, narrowed to str once an app is resolved.
        # hooks: the [[app.hook]] tables, parsed on their own.
        (AppPolicy, {"vault_url", "hooks"}),
        (DaemonPolicy, set()),
        (AlertsPolicy, {"channels"}),  # the [[alerts.channel]] tables, parsed on their own
        (ChannelPolicy, set()),
        (HookPolicy, set()),
    ],
)
def test_every_field_declares_its_key(cls: type, undeclared: set[str]) -> None:
    # A plain field here would be a setting no policy file could set.
    keys = declared(cls)
    plain = {f.name for f in dataclasses.fields(cls)} - {k.attr for k in keys}
    assert plain == undeclared
    for k in keys:
        assert k.help.strip(), f"{cls.__name__}.{k.attr} has no help"


def test_key_table_is_read_back_from_the_fields() -> None:
    app_own = [f.name for f in dataclasses.fields(AppPolicy)
               if f.name not in {g.name for g in dataclasses.fields(AppDefaults)}
               and f.name != "hooks"]
    shared = [f.name for f in dataclasses.fields(AppDefaults)]
    daemon = [f.name for f in dataclasses.fields(DaemonPolicy)]
    assert list(KEYS) == [*app_own, *shared, *daemon]
    assert all(KEYS[k].in_app and not KEYS[k].in_defaults for k in app_own)
    assert all(KEYS[k].in_app and KEYS[k].in_defaults for k in shared)
    assert all(KEYS[k].in_defaults and not KEYS[k].in_app for k in daemon)


def test_built_in_defaults_are_the_fields_defaults_and_pass_their_checks() -> None:
    defaults, daemon = AppDefaults(), DaemonPolicy()
    for name, key in KEYS.items():
        if key.in_defaults:
            holder = defaults if key.in_app else daemon
            assert getattr(holder, key.attr) == key.default, name
    for key in [*KEYS.values(), *declared(AlertsPolicy)]:
        if key.default is not None:  # None: no default, or unset (vault_url, credential)
            assert key.check(_as_toml(key.default)) == key.default, key.name


def _as_toml(value: object) -> object:
    """The value as a policy file would give it."""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, str):  # enums are str
        return str(value)
    return value
