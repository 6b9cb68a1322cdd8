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
