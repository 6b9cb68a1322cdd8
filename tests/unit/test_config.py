"""Settings from the environment and the TOML policy file, and every way the file can be wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from rotator.config import (
    AppPolicy,
    ConfigError,
    KeyType,
    KeyVaultFormat,
    Settings,
    load_policy,
    load_settings,
)
from rotator.domain.credentials import CredentialKind
from tests.unit.policy_files import APP1, APP2, GOOD, VAULT, policy_error, settings, write

# ----------------------------------------------------------------- good files


def test_good_policy_resolves_every_key(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, GOOD), settings())

    assert set(policy.apps) == {APP1, APP2}
    one = policy.for_app(APP1.upper())
    assert one == AppPolicy(
        app_id=APP1,
        vault_url=VAULT,
        secret_name="orders-client-secret",
        renew_before_days=30,
        lifetime_days=180,
        grace_hours=24,
        verify_scope="api://myapis/mywebapi/.default",
        verify_successes=3,
        verify_timeout_seconds=600,
        credential=None,
        key_type=KeyType.RSA3072,
        certificate_subject="CN=rotator",
        key_vault_format=KeyVaultFormat.PKCS12,
        expected_roles=("ReadOnly",),
    )
    assert one.staging_secret_name == "orders-client-secret-next"

    two = policy.for_app(APP2)
    assert two is not None
    assert two.secret_name == f"rotator-{APP2}"
    assert two.credential is CredentialKind.CERTIFICATE
    assert two.lifetime_days == 90 and two.renew_before_days == 10.5
    assert two.vault_url == "https://other.vault.azure.net"
    assert two.expected_roles == ()

    assert policy.daemon.scan_interval_minutes == 15
    assert policy.daemon.reconcile_interval_seconds == 30
    assert policy.daemon.max_concurrent_rotations == 4
    assert policy.for_app("99999999-2222-3333-4444-555555555555") is None


def test_builtin_defaults_and_vault_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, f'[[app]]\napp_id = "{APP1}"\n')
    policy = load_policy(path, settings(ROTATOR_VAULT_URL="https://kv.vault.azure.net/"))
    app = policy.for_app(APP1)
    assert app is not None
    assert app.vault_url == "https://kv.vault.azure.net"
    assert (app.renew_before_days, app.lifetime_days, app.grace_hours) == (30, 180, 24)
    assert app.verify_scope == "https://graph.microsoft.com/.default"
    assert (app.verify_successes, app.verify_timeout_seconds) == (3, 600)
    assert app.key_type is KeyType.RSA2048
    assert app.key_vault_format is KeyVaultFormat.PEM
    assert app.certificate_subject == "CN=rotator"
    assert policy.daemon.max_concurrent_rotations == 8


def test_file_vault_url_wins_over_environment(tmp_path: Path) -> None:
    policy = load_policy(
        write(tmp_path, GOOD), settings(ROTATOR_VAULT_URL="https://env.vault.azure.net")
    )
    app = policy.for_app(APP1)
    assert app is not None and app.vault_url == VAULT


def test_no_policy_file_manages_nothing() -> None:
    policy = load_policy(None, settings())
    assert dict(policy.apps) == {}
    assert policy.for_app(APP1) is None


def test_same_secret_name_in_different_vaults_is_fine(tmp_path: Path) -> None:
    text = f"""
    [[app]]
    app_id = "{APP1}"
    vault_url = "https://a.vault.azure.net"
    secret_name = "client"
    [[app]]
    app_id = "{APP2}"
    vault_url = "https://b.vault.azure.net"
    secret_name = "client"
    """
    assert len(load_policy(write(tmp_path, text), settings()).apps) == 2


# ----------------------------------------------------------------- bad files


def test_missing_file_names_the_path_and_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_policy(path, settings())
    assert str(path) in str(info.value)
    assert "ROTATOR_CONFIG" in str(info.value)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ROTATOR_CONFIG"):
        load_policy(tmp_path, settings())  # a directory


def test_toml_syntax_error_has_the_line(tmp_path: Path) -> None:
    message = policy_error(tmp_path, '[defaults]\nlifetime_days = 180\nvault_url = "https://x\n')
    assert "line 3" in message
    assert "not valid TOML" in message


def test_unknown_key_suggests_the_closest(tmp_path: Path) -> None:
    text = f"""
    [defaults]
    vault_url = "{VAULT}"

    [[app]]
    app_id = "{APP1}"
    secret_nmae = "orders"
    """
    message = policy_error(tmp_path, text)
    assert ":7:" in message
    assert "'secret_nmae'" in message
    assert "did you mean 'secret_name'?" in message


def test_unknown_defaults_key_and_top_level_key(tmp_path: Path) -> None:
    message = policy_error(tmp_path, "[defaults]\nrenew_before_day = 3\n\n[apps]\nx = 1\n")
    assert ":2:" in message and "did you mean 'renew_before_days'?" in message
    assert ":4:" in message and "'apps'" in message and "did you mean 'app'?" in message


@pytest.mark.parametrize(
    ("line", "key", "hint"),
    [
        ('lifetime_days = "180"', "lifetime_days", "whole number of days"),
        ("lifetime_days = 180.5", "lifetime_days", "whole number of days"),
        ("lifetime_days = true", "lifetime_days", "whole number of days"),
        ("lifetime_days = 0", "lifetime_days", "between 1 and 3650"),
        ("lifetime_days = 5000", "lifetime_days", "between 1 and 3650"),
        ("renew_before_days = 200", "renew_before_days", "less than lifetime_days"),
        ("renew_before_days = 0", "renew_before_days", "more than 0"),
        ("verify_successes = 0", "verify_successes", "between 1 and 100"),
        ("grace_hours = -1", "grace_hours", "between 0 and"),
        ("verify_timeout_seconds = 0", "verify_timeout_seconds", "more than 0"),
        ('verify_scope = "api://x"', "verify_scope", "/.default"),
        ('credential = "password"', "credential", "secret, certificate"),
        ('key_type = "RSA1024"', "key_type", "RSA2048"),
        ('key_vault_format = "der"', "key_vault_format", "pem, pkcs12"),
        ('vault_url = "http://kv.example"', "vault_url", "https://"),
        ('secret_name = "orders_secret"', "secret_name", "letters, digits and dashes"),
        (f'secret_name = "{"s" * 128}"', "secret_name", "letters, digits and dashes"),
        (f'secret_name = "{"s" * 123}"', "secret_name", "staging secret"),
        ('expected_roles = "ReadOnly"', "expected_roles", "list of role names"),
        ("scan_interval_minutes = 5", "scan_interval_minutes", "move it into [defaults]"),
    ],
)
def test_bad_app_values_name_line_key_and_fix(
    tmp_path: Path, line: str, key: str, hint: str
) -> None:
    text = f'[defaults]\nvault_url = "{VAULT}"\n\n[[app]]\napp_id = "{APP1}"\n{line}\n'
    message = policy_error(tmp_path, text)
    assert f"'{key}'" in message
    assert ":6:" in message, message
    assert hint in message


def test_secret_name_of_122_characters_fits_with_its_staging_name(tmp_path: Path) -> None:
    text = f'[[app]]\napp_id = "{APP1}"\nvault_url = "{VAULT}"\nsecret_name = "{"s" * 122}"\n'
    app = load_policy(write(tmp_path, text), settings()).for_app(APP1)
    assert app is not None and len(app.staging_secret_name) == 127


def test_defaults_are_validated_too(tmp_path: Path) -> None:
    text = '[defaults]\nlifetime_days = 10\nrenew_before_days = 30\nsecret_name = "x"\n'
    message = policy_error(tmp_path, text)
    assert ":3:" in message and "less than lifetime_days" in message
    assert ":4:" in message and "move it into an [[app]] table" in message


def test_app_id_must_be_a_guid(tmp_path: Path) -> None:
    message = policy_error(tmp_path, f'[[app]]\nvault_url = "{VAULT}"\napp_id = "orders"\n')
    assert ":3:" in message and "'app_id'" in message and "GUID" in message


def test_app_id_is_required(tmp_path: Path) -> None:
    message = policy_error(tmp_path, f'[[app]]\nvault_url = "{VAULT}"\n')
    assert ":1:" in message and "app_id is missing" in message


def test_duplicate_apps(tmp_path: Path) -> None:
    text = f"""
    [defaults]
    vault_url = "{VAULT}"

    [[app]]
    app_id = "{APP1}"

    [[app]]
    app_id = "{APP1.upper()}"
    """
    message = policy_error(tmp_path, text)
    assert ":9:" in message and "already configured at line 5" in message


def test_missing_vault_url_says_where_to_set_it(tmp_path: Path) -> None:
    message = policy_error(tmp_path, f'[[app]]\napp_id = "{APP1}"\n')
    assert "vault_url" in message and "ROTATOR_VAULT_URL" in message


def test_bad_vault_url_in_environment(tmp_path: Path) -> None:
    message = policy_error(
        tmp_path, f'[[app]]\napp_id = "{APP1}"\n', ROTATOR_VAULT_URL="http://kv.local"
    )
    assert "ROTATOR_VAULT_URL" in message and "https://" in message


def test_two_apps_sharing_a_secret_in_one_vault(tmp_path: Path) -> None:
    text = f"""
    [defaults]
    vault_url = "{VAULT}"

    [[app]]
    app_id = "{APP1}"
    secret_name = "shared"

    [[app]]
    app_id = "{APP2}"
    secret_name = "Shared"
    """
    message = policy_error(tmp_path, text)
    assert ":11:" in message and "already the secret of app" in message and APP1 in message


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    text = f"""
    [[app]]
    app_id = "{APP1}"
    vault_url = "{VAULT}"
    lifetime_days = 0
    verify_successes = 0
    """
    assert "2 problems" in policy_error(tmp_path, text)


# ----------------------------------------------------------------- settings


def test_settings_defaults() -> None:
    s = load_settings({})
    assert s.authority_host == "https://login.microsoftonline.com"
    assert s.graph_url == "https://graph.microsoft.com/v1.0"
    assert s.database_url == "sqlite:///rotator.db"
    assert s.http_port == 9464
    assert s.log_format == "auto"
    assert s.log_level == "INFO"
    assert s.vault_url is None and s.ca_bundle is None and s.config_path is None
    assert s.client_secret is None


def test_settings_from_environment(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    s = load_settings(
        {
            "ROTATOR_AUTHORITY_HOST": "https://127.0.0.1:8443/",
            "ROTATOR_GRAPH_URL": "https://127.0.0.1:8443/v1.0",
            "ROTATOR_VAULT_URL": VAULT,
            "ROTATOR_CA_BUNDLE": str(ca),
            "ROTATOR_DATABASE_URL": "postgresql+psycopg://u@db/rotator",
            "ROTATOR_CONFIG": "policy.toml",
            "ROTATOR_HTTP_PORT": "8080",
            "ROTATOR_LOG_FORMAT": "json",
            "ROTATOR_LOG_LEVEL": "debug",
            "AZURE_TENANT_ID": "tenant",
            "AZURE_CLIENT_ID": "client",
            "AZURE_CLIENT_SECRET": "hunter2-secret",
            "ROTATOR_UNRELATED": "ignored",
        }
    )
    assert s.authority_host == "https://127.0.0.1:8443"
    assert s.ca_bundle == ca
    assert s.config_path == Path("policy.toml")
    assert s.http_port == 8080
    assert s.log_format == "json"
    assert s.log_level == "DEBUG" and s.log_level_number == 10
    assert (s.tenant_id, s.client_id) == ("tenant", "client")
    assert s.client_secret is not None
    assert s.client_secret.get_secret_value() == "hunter2-secret"


def test_client_secret_never_shows() -> None:
    s = load_settings({"AZURE_CLIENT_SECRET": "hunter2-secret"})
    for text in (repr(s), str(s), s.model_dump_json(), repr(s.model_dump())):
        assert "hunter2" not in text
    with pytest.raises(ConfigError) as info:
        load_settings({"AZURE_CLIENT_SECRET": "hunter2-secret", "ROTATOR_HTTP_PORT": "hunter2"})
    assert "hunter2" not in str(info.value)
    assert "ROTATOR_HTTP_PORT" in str(info.value)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"ROTATOR_CA_BUNDLE": "/does/not/exist.pem"}, "ROTATOR_CA_BUNDLE"),
        ({"ROTATOR_HTTP_PORT": "70000"}, "ROTATOR_HTTP_PORT"),
        ({"ROTATOR_LOG_FORMAT": "xml"}, "ROTATOR_LOG_FORMAT"),
        ({"ROTATOR_LOG_LEVEL": "LOUD"}, "ROTATOR_LOG_LEVEL"),
        ({"ROTATOR_AUTHORITY_HOST": "http://login"}, "ROTATOR_AUTHORITY_HOST"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_settings(env)


def test_env_file_fills_in_what_the_environment_does_not_set(tmp_path: Path) -> None:
    env_file = tmp_path / "emulator.env"
    env_file.write_text(
        "# written by the emulator\n"
        "\n"
        "export AZURE_TENANT_ID=tenant-from-file\n"
        'AZURE_CLIENT_SECRET="secret from file"\n'
        "ROTATOR_VAULT_URL='https://127.0.0.1:8443'\n"
        "ROTATOR_HTTP_PORT=1234\n"
    )
    s = load_settings({"ROTATOR_ENV_FILE": str(env_file), "ROTATOR_HTTP_PORT": "9999"})
    assert s.tenant_id == "tenant-from-file"
    assert s.client_secret is not None
    assert s.client_secret.get_secret_value() == "secret from file"
    assert s.vault_url == VAULT
    assert s.http_port == 9999  # the environment wins
    assert s.env_file == env_file


def test_env_file_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ROTATOR_ENV_FILE"):
        load_settings({"ROTATOR_ENV_FILE": str(tmp_path / "missing.env")})
    bad = tmp_path / "bad.env"
    bad.write_text("A=1\nthis is not an assignment\n")
    with pytest.raises(ConfigError, match=r"bad\.env:2"):
        load_settings({"ROTATOR_ENV_FILE": str(bad)})


def test_settings_class_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROTATOR_HTTP_PORT", "7000")
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "from-env")
    assert Settings().http_port == 7000
    assert load_settings().http_port == 7000


def test_default_database_url_matches_the_migrations_default() -> None:
    from rotator.adapters.db.session import default_database_url

    assert load_settings({}).database_url == default_database_url()


# ---------------------------------------------------------------- [[app.hook]]


def _hook_policy(tmp_path: Path, hooks: str, *, second: str = "") -> Path:
    path = tmp_path / "hooks.toml"
    path.write_text(
        '[defaults]\nvault_url = "https://v.vault.azure.net"\n\n'
        '[[app]]\napp_id = "11111111-2222-3333-4444-555555555555"\n\n' + hooks
        + ('\n[[app]]\napp_id = "11111111-2222-3333-4444-555555555556"\n\n' + second
           if second else "")
    )
    return path


def test_hooks_parse_with_their_defaults(tmp_path: Path) -> None:
    from rotator.domain.hooks import EventType, HookKind

    path = _hook_policy(tmp_path, (
        '[[app.hook]]\ntype = "webhook"\nurl = "https://hooks.example.com/x"\n'
        'secret_env = "ORDERS_HOOK_KEY"\n\n'
        '[[app.hook]]\ntype = "command"\nargv = ["systemctl", "restart", "orders"]\n'
        'timeout_seconds = 5\nevents = ["promoted", "held"]\n'
    ))
    app = load_policy(path, load_settings({})).for_app("11111111-2222-3333-4444-555555555555")
    assert app is not None
    web, cmd = app.hooks
    assert (web.type, web.name, web.url, web.secret_env) == (
        HookKind.WEBHOOK, "webhook-1", "https://hooks.example.com/x", "ORDERS_HOOK_KEY")
    assert web.events == tuple(EventType) and web.timeout_seconds == 30
    assert (cmd.name, cmd.argv, cmd.timeout_seconds) == (
        "command-1", ("systemctl", "restart", "orders"), 5)
    assert cmd.events == (EventType.PROMOTED, EventType.HELD)


def test_hook_problems_are_reported_with_their_lines(tmp_path: Path) -> None:
    path = _hook_policy(tmp_path, (
        '[[app.hook]]\ntype = "webhook"\nurl = "http://hooks.example.com/x"\n'
        'secret_env = "K"\n\n'
        '[[app.hook]]\ntype = "command"\nargv = "systemctl restart orders"\n'
    ), second=(
        '[[app.hook]]\ntype = "webhook"\nurl = "http://127.0.0.1:8080/x"\n\n'
        '[[app.hook]]\ntype = "command"\nargv = ["true"]\nsecret = "x"\n'
        'events = ["rotated"]\n'
    ))
    with pytest.raises(ConfigError) as caught:
        load_policy(path, load_settings({}))
    text = str(caught.value)
    assert "5 problems" in text
    assert "hooks.toml:9: [[app]] #1 [[app.hook]] #1 (webhook) key 'url': must be an https" in text
    assert "hooks.toml:14: [[app]] #1 [[app.hook]] #2 (command) key 'argv'" in text
    assert "hooks.toml:19: [[app]] #2 [[app.hook]] #1 (webhook): secret_env missing" in text
    assert "hooks.toml:26: [[app]] #2 [[app.hook]] #2 (command) key 'secret'" in text
    assert "hooks.toml:27: [[app]] #2 [[app.hook]] #2 (command) key 'events'" in text


def test_a_hook_without_a_type_and_a_duplicate_name_are_refused(tmp_path: Path) -> None:
    path = _hook_policy(tmp_path, (
        '[[app.hook]]\nargv = ["true"]\n\n'
        '[[app.hook]]\ntype = "command"\nname = "restart"\nargv = ["true"]\n\n'
        '[[app.hook]]\ntype = "command"\nname = "restart"\nargv = ["true"]\n'
    ))
    with pytest.raises(ConfigError) as caught:
        load_policy(path, load_settings({}))
    text = str(caught.value)
    assert "hooks.toml:7: [[app]] #1 [[app.hook]] #1: type is missing" in text
    assert "hooks.toml:17: [[app]] #1 [[app.hook]] #3 key 'name': 'restart' is already" in text


@pytest.mark.parametrize(
    ("lines", "line_no", "key"),
    [
        # the app's own retire_max_wait_hours is at or under the inherited grace_hours
        ('retire_when = "unused"\nretire_max_wait_hours = 24', 7, "retire_max_wait_hours"),
        # the app's own grace_hours reaches the default retire_max_wait_hours (168)
        ('retire_when = "unused"\ngrace_hours = 200', 7, "grace_hours"),
        ('retire_when = "unused"', 6, "retire_when"),
    ],
)
def test_retire_max_wait_must_exceed_grace_in_unused_mode(
    tmp_path: Path, lines: str, line_no: int, key: str
) -> None:
    defaults = "grace_hours = 170\n" if key == "retire_when" else ""
    text = (f'[defaults]\nvault_url = "{VAULT}"\n{defaults}\n[[app]]\napp_id = "{APP1}"\n'
            f"{lines}\n")
    if defaults:
        line_no += 1
    message = policy_error(tmp_path, text)
    assert f":{line_no}:" in message and f"key '{key}'" in message, message
    assert "retire_max_wait_hours" in message and "must be more than grace_hours" in message


def test_retire_max_wait_must_exceed_grace_in_defaults(tmp_path: Path) -> None:
    text = (f'[defaults]\nvault_url = "{VAULT}"\nretire_when = "unused"\ngrace_hours = 48\n'
            f'retire_max_wait_hours = 48\n\n[[app]]\napp_id = "{APP1}"\n')
    message = policy_error(tmp_path, text)
    assert ":5: [defaults] key 'retire_max_wait_hours'" in message, message
    assert message.count("must be more than grace_hours") == 1  # not again for each app


def test_retire_max_wait_is_not_checked_on_the_grace_rule(tmp_path: Path) -> None:
    text = (f'[defaults]\nvault_url = "{VAULT}"\ngrace_hours = 200\n\n'
            f'[[app]]\napp_id = "{APP1}"\n')
    app = load_policy(write(tmp_path, text), settings()).for_app(APP1)
    assert app is not None and app.grace_hours == 200


@pytest.mark.parametrize(
    ("lines", "key", "says"),
    [
        ('key_source = "keyvault"', "key_source", 'needs key_vault_format = "certificate"'),
        ('key_source = "keyvault"\nkey_vault_format = "pkcs12"', "key_source",
         'needs key_vault_format = "certificate"'),
        ('key_source = "keyvault"\nkey_vault_format = "certificate"\nkey_type = "RSA4096"',
         "key_source", "RSA keys of 2048 or 3072 bits, not RSA4096"),
        ('key_source = "keyvault"\nkey_vault_format = "certificate"\nkey_type = "EC_P256"',
         "key_source", "not EC_P256"),
    ],
)
def test_key_vault_made_keys_need_a_certificate_object_and_an_rsa_size_it_makes(
    tmp_path: Path, lines: str, key: str, says: str
) -> None:
    text = f'[defaults]\nvault_url = "{VAULT}"\n\n[[app]]\napp_id = "{APP1}"\n{lines}\n'
    message = policy_error(tmp_path, text)
    assert f":6: [[app]] #1 ({APP1}) key '{key}'" in message, message
    assert says in message, message


def test_key_source_checked_once_in_defaults(tmp_path: Path) -> None:
    text = (f'[defaults]\nvault_url = "{VAULT}"\nkey_source = "keyvault"\n\n'
            f'[[app]]\napp_id = "{APP1}"\n')
    message = policy_error(tmp_path, text)
    assert ":3: [defaults] key 'key_source'" in message, message
    assert message.count("needs key_vault_format") == 1


def test_certificate_objects_made_in_key_vault_resolve(tmp_path: Path) -> None:
    text = (f'[defaults]\nvault_url = "{VAULT}"\n\n[[app]]\napp_id = "{APP1}"\n'
            'key_vault_format = "certificate"\ncertificate_content_type = "pem"\n'
            'key_source = "keyvault"\nkey_type = "RSA3072"\n')
    app = load_policy(write(tmp_path, text), settings()).for_app(APP1)
    assert app is not None
    assert (str(app.key_vault_format), str(app.certificate_content_type),
            str(app.key_source)) == ("certificate", "pem", "keyvault")
    bad = policy_error(tmp_path, text.replace('"pem"', '"der"'))
    assert "must be one of pkcs12, pem" in bad, bad
