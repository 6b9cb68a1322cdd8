import uuid
from datetime import UTC, datetime

import pytest

from rotator.adapters.graph_json import (
    AppParseError,
    describe,
    parse_application,
    parse_datetime,
)
from rotator.domain.credentials import CredentialKind

OBJ, APP = "4F3C2B1A-0000-4000-8000-000000000001", "4f3c2b1a-0000-4000-8000-000000000002"
K1, K2 = "4F3C2B1A-0000-4000-8000-0000000000A1", "4f3c2b1a-0000-4000-8000-0000000000a2"
END = "2027-01-01T00:00:00Z"


def secret(**fields: object) -> dict[str, object]:
    return {"keyId": str(uuid.uuid4()), "endDateTime": END, **fields}


def application(**fields: object) -> dict[str, object]:
    return {"id": OBJ, "appId": APP, "passwordCredentials": [], "keyCredentials": [], **fields}


def test_parses_secrets_and_certificates() -> None:
    app = parse_application({
        "id": OBJ, "appId": APP, "displayName": "x",
        "passwordCredentials": [{"keyId": K1, "endDateTime": "2027-01-01T00:00:00.1234567Z",
                                 "startDateTime": None, "hint": "abc", "displayName": None}],
        "keyCredentials": [{"keyId": K2, "endDateTime": "2027-01-01T02:00:00+02:00",
                            "customKeyIdentifier": "q83vEjRWeJq83vEjRWeJq83vEjQ="}],
        "unknownField": 1,
    })
    assert app.app_id == APP.lower() and app.object_id == OBJ.lower()
    s, c = app.credentials
    assert s.kind is CredentialKind.SECRET and s.hint == "abc" and s.key_id == K1.lower()
    assert s.end == datetime(2027, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
    assert c.kind is CredentialKind.CERTIFICATE
    assert c.end == datetime(2027, 1, 1, tzinfo=UTC) and c.end.utcoffset() is not None
    assert c.thumbprint == "ABCDEF123456789ABCDEF123456789ABCDEF1234"


def test_hex_thumbprints_are_not_mistaken_for_base64() -> None:
    app = parse_application(application(keyCredentials=[
        secret(customKeyIdentifier="0123456789abcdef0123456789abcdef01234567")]))
    assert app.credentials[0].thumbprint == "0123456789ABCDEF0123456789ABCDEF01234567"


@pytest.mark.parametrize(("bad", "words"), [
    (None, "not an object"),
    ([], "not an object"),
    ({"appId": APP, "passwordCredentials": [], "keyCredentials": []}, "missing id"),
    ({"id": OBJ, "passwordCredentials": [], "keyCredentials": []}, "missing appId"),
    (application(id="OBJ"), "id 'OBJ' is not a GUID"),
    (application(appId=f"{{{APP}}}"), "is not a GUID"),
    (application(passwordCredentials="nope"), "passwordCredentials is not a list"),
    (application(passwordCredentials=None), "missing passwordCredentials"),
    ({"id": OBJ, "appId": APP, "passwordCredentials": []}, "missing keyCredentials"),
    (application(passwordCredentials=[{"endDateTime": END}]), "missing keyId"),
    (application(passwordCredentials=[secret(keyId="k1")]), "keyId 'k1' is not a GUID"),
    (application(passwordCredentials=[secret(endDateTime="soon")]), "bad date 'soon'"),
    (application(passwordCredentials=[secret(endDateTime=None)]), "missing endDateTime"),
    (application(passwordCredentials=[{"keyId": K1}]), "missing endDateTime"),
    (application(passwordCredentials=[secret(endDateTime=12345)]), "got int"),
    (application(passwordCredentials=[secret(endDateTime="9999-12-31T23:00:00-05:00")]),
     "out of range"),
    (application(passwordCredentials=[secret(hint="h" * 65)]), "hint is longer"),
    (application(keyCredentials=[secret(customKeyIdentifier="QUFB" * 50)]),
     "customKeyIdentifier"),
    (application(passwordCredentials=[secret(keyId=K1)], keyCredentials=[secret(keyId=K1)]),
     "duplicated keyId"),
    (application(passwordCredentials=[secret(keyId=K1), secret(keyId=K1.lower())]),
     "duplicated keyId"),
])
def test_malformed_apps_raise_parse_errors(bad: object, words: str) -> None:
    with pytest.raises(AppParseError) as raised:
        parse_application(bad)
    assert words in str(raised.value)


def test_credential_errors_say_where() -> None:
    with pytest.raises(AppParseError) as raised:
        parse_application(application(keyCredentials=[secret(), secret(
            keyId=K2, startDateTime="x" * 500)]))
    message = str(raised.value)
    assert message.startswith(f"keyCredentials[1]: keyId {K2.lower()}: startDateTime: bad date")
    assert len(message) < 150


def test_empty_lists_and_missing_optional_values_are_fine() -> None:
    app = parse_application(application(displayName=None, passwordCredentials=[
        {"keyId": K1, "endDateTime": END}]))
    assert app.display_name == ""
    [c] = app.credentials
    assert c.start is None and c.display_name is None and c.hint is None
    assert parse_application(application()).credentials == ()


@pytest.mark.parametrize(("text", "instant"), [
    ("2027-01-01T00:00:00", datetime(2027, 1, 1, tzinfo=UTC)),
    ("2027-01-01T10:00:00+02:00", datetime(2027, 1, 1, 8, tzinfo=UTC)),
    ("2027-01-01T10:00:00.1234567Z", datetime(2027, 1, 1, 10, 0, 0, 123456, tzinfo=UTC)),
    ("2027-01-01T10:00:00.1234567-01:30", datetime(2027, 1, 1, 11, 30, 0, 123456, tzinfo=UTC)),
    ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
    ("9999-12-31T23:59:59.9999999Z", datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
])
def test_dates_are_utc_instants(text: str, instant: datetime) -> None:
    parsed = parse_datetime(text)
    assert parsed == instant and parsed is not None and parsed.tzinfo is UTC


@pytest.mark.parametrize("text", ["9999-12-31T23:59:59-00:01", "0001-01-01T00:00:00+00:01"])
def test_dates_beyond_what_utc_can_hold_are_parse_errors(text: str) -> None:
    with pytest.raises(AppParseError, match="out of range"):
        parse_datetime(text)


def test_unreadable_entries_are_named_by_what_they_carry() -> None:
    assert describe({"id": OBJ}) == (OBJ, "")
    assert describe({"id": 5}) == ("5", "")
    assert describe({"appId": APP, "displayName": "d"}) == (
        None, f" (appId '{APP}', displayName 'd')")
    assert describe("x") == (None, "")
