import pytest

from rotator.adapters.graph_json import AppParseError, parse_application, parse_datetime
from rotator.domain.credentials import CredentialKind


def test_parses_secrets_and_certificates() -> None:
    app = parse_application({
        "id": "OBJ", "appId": "APP", "displayName": "x",
        "passwordCredentials": [{"keyId": "K1", "endDateTime": "2027-01-01T00:00:00.1234567Z",
                                 "startDateTime": None, "hint": "abc", "displayName": None}],
        "keyCredentials": [{"keyId": "K2", "endDateTime": "2027-01-01T02:00:00+02:00",
                            "customKeyIdentifier": "q83vEjRWeJq83vEjRWeJq83vEjQ="}],
        "unknownField": 1,
    })
    assert app.app_id == "app" and app.object_id == "obj"
    s, c = app.credentials
    assert s.kind is CredentialKind.SECRET and s.hint == "abc" and s.key_id == "k1"
    assert c.kind is CredentialKind.CERTIFICATE
    assert c.end is not None and c.end.hour == 0 and c.end.utcoffset() is not None
    assert c.thumbprint == "ABCDEF123456789ABCDEF123456789ABCDEF1234"


def test_hex_thumbprints_are_not_mistaken_for_base64() -> None:
    app = parse_application({"id": "o", "appId": "a", "keyCredentials": [
        {"keyId": "k", "customKeyIdentifier": "0123456789abcdef0123456789abcdef01234567"}]})
    assert app.credentials[0].thumbprint == "0123456789ABCDEF0123456789ABCDEF01234567"


@pytest.mark.parametrize("bad", [
    None, [], {"appId": "a"}, {"id": "o"},
    {"id": "o", "appId": "a", "passwordCredentials": "nope"},
    {"id": "o", "appId": "a", "passwordCredentials": [{"endDateTime": "2027-01-01"}]},
    {"id": "o", "appId": "a", "passwordCredentials": [{"keyId": "k", "endDateTime": "soon"}]},
    {"id": "o", "appId": "a", "passwordCredentials": [{"keyId": "k"}],
     "keyCredentials": [{"keyId": "K"}]},
])
def test_malformed_apps_raise_parse_errors(bad: object) -> None:
    with pytest.raises(AppParseError):
        parse_application(bad)


def test_naive_dates_are_utc() -> None:
    d = parse_datetime("2027-01-01T00:00:00")
    assert d is not None and d.utcoffset() is not None and d.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
