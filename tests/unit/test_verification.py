from rotator.domain.credentials import CredentialKind
from rotator.domain.verification import (
    AttemptKind,
    VerifyProgress,
    judge_claims,
    judge_refusal,
)

GOOD = {"appid": "c1", "tid": "t1", "appidacr": "1", "roles": ["ReadOnly"]}


def judge(claims: dict[str, object], roles: tuple[str, ...] = ()) -> AttemptKind:
    return judge_claims(claims, client_id="C1", tenant_id="T1", expected_roles=roles,
                        credential_kind=CredentialKind.SECRET).kind


def test_good_token_passes() -> None:
    assert judge(GOOD, ("ReadOnly",)) is AttemptKind.SUCCESS


def test_wrong_app_tenant_or_acr_is_fatal() -> None:
    assert judge({**GOOD, "appid": "other"}) is AttemptKind.FATAL
    assert judge({**GOOD, "tid": "other"}) is AttemptKind.FATAL
    assert judge({**GOOD, "appidacr": "2"}) is AttemptKind.FATAL


def test_missing_role_is_fatal_and_says_admin_consent() -> None:
    verdict = judge_claims({**GOOD, "roles": []}, client_id="c1", tenant_id="t1",
                           expected_roles=["ReadOnly"], credential_kind=CredentialKind.SECRET)
    assert verdict.kind is AttemptKind.FATAL
    assert "admin consent" in verdict.message
    no_claim = {k: v for k, v in GOOD.items() if k != "roles"}
    assert judge(no_claim, ("ReadOnly",)) is AttemptKind.FATAL


def test_refusals() -> None:
    assert judge_refusal("AADSTS7000215", "bad").kind is AttemptKind.NOT_YET
    assert judge_refusal(None, "timeout").kind is AttemptKind.TRANSIENT
    assert judge_refusal("AADSTS700016", "x").kind is AttemptKind.FATAL
    assert "service principal" in judge_refusal("AADSTS7000229", "x").message


def test_progress_needs_consecutive_successes() -> None:
    ok = judge_refusal  # noqa: F841 - readability below
    s = VerifyProgress(required=3)
    success = type("V", (), {"kind": AttemptKind.SUCCESS, "message": ""})()
    refusal = type("V", (), {"kind": AttemptKind.NOT_YET, "message": ""})()
    for v in (success, success, refusal, success, success):
        s = s.record(v)  # type: ignore[arg-type]
    assert not s.proven and s.consecutive == 2 and s.refusals == 1
    s = s.record(success)  # type: ignore[arg-type]
    assert s.proven and s.attempts == 6


def test_configuration_errors_are_fatal_with_words_that_say_what_to_check() -> None:
    wrong_audience = judge_refusal("AADSTS700023", "Client assertion audience claim ...")
    assert wrong_audience.kind is AttemptKind.FATAL
    assert "authority host" in wrong_audience.message
    assert judge_refusal("AADSTS700024", "x").kind is AttemptKind.FATAL
    assert judge_refusal("AADSTS90002", "x").kind is AttemptKind.FATAL


def test_a_4xx_without_an_aadsts_code_is_fatal_but_throttling_is_not() -> None:
    assert judge_refusal(None, "Not Found", 404).kind is AttemptKind.FATAL
    assert judge_refusal(None, "throttled", 429).kind is AttemptKind.TRANSIENT
    assert judge_refusal(None, "unavailable", 503).kind is AttemptKind.TRANSIENT
    assert judge_refusal(None, "timeout").kind is AttemptKind.TRANSIENT


# Token versions: a v1 token (Graph, Key Vault, a portal-made API) names the client in
# appid/appidacr, a v2 token (an API asking for v2) in azp/azpacr, never both.
V1 = {"ver": "1.0", "appid": "c1", "appidacr": "1", "tid": "t1"}
V2 = {"ver": "2.0", "azp": "c1", "azpacr": "1", "tid": "t1"}


def _verdict(claims: dict[str, object], kind: CredentialKind = CredentialKind.SECRET):  # type: ignore[no-untyped-def]
    return judge_claims(claims, client_id="C1", tenant_id="T1", expected_roles=(),
                        credential_kind=kind)


def test_each_token_version_proves_a_secret_and_a_certificate() -> None:
    for shape, acr in ((V1, "appidacr"), (V2, "azpacr")):
        assert _verdict(shape).kind is AttemptKind.SUCCESS
        cert = {**shape, acr: "2"}
        assert _verdict(cert, CredentialKind.CERTIFICATE).kind is AttemptKind.SUCCESS
        wrong = _verdict(cert)  # a certificate's token does not prove a new secret
        assert wrong.kind is AttemptKind.FATAL
        assert f"{acr}=2" in wrong.message and "certificate" in wrong.message
        assert _verdict(shape, CredentialKind.CERTIFICATE).kind is AttemptKind.FATAL


def test_a_v2_token_names_its_client_in_azp_only() -> None:
    # A stray appid does not make a token issued to another client ours.
    verdict = _verdict({**V2, "azp": "other", "appid": "c1"})
    assert verdict.kind is AttemptKind.FATAL and "(azp)" in verdict.message
    assert _verdict({**V2, "azpacr": "2", "appidacr": "1"}).kind is AttemptKind.FATAL


def test_a_v1_token_names_its_client_in_appid_only() -> None:
    verdict = _verdict({"ver": "1.0", "azp": "c1", "azpacr": "1", "tid": "t1"})
    assert verdict.kind is AttemptKind.FATAL and "(appid)" in verdict.message
    assert _verdict({**V1, "appidacr": "2", "azpacr": "1"}).kind is AttemptKind.FATAL


def test_without_ver_the_pair_present_is_read() -> None:
    no_ver = {k: v for k, v in V2.items() if k != "ver"}
    assert _verdict(no_ver).kind is AttemptKind.SUCCESS
    assert _verdict({**no_ver, "azpacr": "2"}).kind is AttemptKind.FATAL
    assert _verdict({k: v for k, v in V1.items() if k != "ver"}).kind is AttemptKind.SUCCESS
