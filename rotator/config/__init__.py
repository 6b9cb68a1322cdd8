"""Settings from the environment and the per-app policy from a TOML file.

Everything is checked at load time, so a typo in the policy file stops the
service at start-up with a message that names the file, the line, the key and
the fix, instead of surfacing as a failed rotation weeks later.

The package's modules, by what they hold:

- ``settings``: the process settings from the environment (``Settings``, ``load_settings``)
- ``policy``: the policy model (``Policy``, ``AppPolicy``, ``AppDefaults``, ``DaemonPolicy``),
  whose fields declare the keys of ``[defaults]`` and ``[[app]]`` (``KEYS``)
- ``keys``: how a key is declared once, as a field, and read back into a table
- ``alerts``: the ``[alerts]`` table, its model and its parsing
- ``api``: the ``[api]`` table (the HTTPS API's audience and app roles)
- ``load``: reading the TOML policy file (``load_policy``, ``empty_policy``)
- ``checks``: checks of single values; ``problems``: reporting them with line numbers
- ``files``: reading the files configuration names; ``errors``: ``ConfigError``

Import from ``rotator.config`` itself: these names are its interface.
"""

from __future__ import annotations

from rotator.config.alerts import (
    DEFAULT_ALERT_THRESHOLDS,
    AlertsPolicy,
    ChannelPolicy,
    ChannelType,
    DigestMode,
)
from rotator.config.api import ApiPolicy
from rotator.config.checks import MAX_SECRET_NAME, check_vault_url
from rotator.config.errors import ConfigError
from rotator.config.hooks import HookPolicy
from rotator.config.load import empty_policy, load_policy
from rotator.config.policy import (
    KEYS,
    AppDefaults,
    AppPolicy,
    CertificateContent,
    DaemonPolicy,
    KeySource,
    KeyType,
    KeyVaultFormat,
    Policy,
    default_secret_name,
)
from rotator.config.settings import SETTINGS_ENV, Settings, load_settings, read_env_file

__all__ = [
    "DEFAULT_ALERT_THRESHOLDS",
    "KEYS",
    "MAX_SECRET_NAME",
    "SETTINGS_ENV",
    "AlertsPolicy",
    "ApiPolicy",
    "AppDefaults",
    "AppPolicy",
    "CertificateContent",
    "ChannelPolicy",
    "ChannelType",
    "ConfigError",
    "DaemonPolicy",
    "DigestMode",
    "HookPolicy",
    "KeySource",
    "KeyType",
    "KeyVaultFormat",
    "Policy",
    "Settings",
    "check_vault_url",
    "default_secret_name",
    "empty_policy",
    "load_policy",
    "load_settings",
    "read_env_file",
]
