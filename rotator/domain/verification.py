"""Deciding whether a new credential is proven, from token outcomes alone.

Entra is eventually consistent: a fresh credential is refused by some replicas
for seconds to minutes, and one success does not mean every replica knows it.
So the rule is N *consecutive* successes inside a deadline, and a refusal that
only means "not propagated yet" restarts the count instead of failing.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum

from rotator.domain.credentials import CredentialKind

# Codes Entra answers while a new credential has not reached every replica.
NOT_PROPAGATED_YET = frozenset(
    {
        "AADSTS7000215",  # invalid client secret
        "AADSTS700027",  # client assertion signature / unknown certificate
        "AADSTS7000222",  # in real tenants also seen briefly for fresh secrets
    }
)

# Codes that time will not fix: the app, its service principal, the scope or the way
# the token is asked for is wrong. Any other code fails the step at once too; these
# only get words that say what to check.
HINTS: Mapping[str, str] = {
    "AADSTS700016": "the application was not found in the tenant",
    "AADSTS700023": "the client assertion's audience is not this tenant's token endpoint; "
    "check the authority host rotator is configured with (ROTATOR_AUTHORITY_HOST)",
    "AADSTS700024": "the client assertion is outside its valid time range; check this "
    "machine's clock",
    "AADSTS700021": "the client assertion names another application than client_id",
    "AADSTS90002": "the tenant was not found; check AZURE_TENANT_ID and the authority host",
    "AADSTS50027": "the client assertion is malformed",
    "AADSTS7000229": "the application has no service principal in the tenant; create one",
    "AADSTS1002012": "the verify scope must end in /.default",
    "AADSTS500011": "the resource of the verify scope is not registered in the tenant; "
    "check verify_scope",
}


class AttemptKind(StrEnum):
    SUCCESS = "success"
    NOT_YET = "not_yet"  # refused, most likely propagation; keep trying
    TRANSIENT = "transient"  # network / 5xx from the token endpoint; keep trying
    FATAL = "fatal"  # the credential works but the token is wrong, or the app is


@dataclass(frozen=True, slots=True)
class AttemptVerdict:
    kind: AttemptKind
    message: str


@dataclass(frozen=True, slots=True)
class ClientClaims:
    """Who a token was issued to and how that client authenticated, by token version.

    A v1 token (``ver`` "1.0": Graph, Key Vault, an API made in the portal) names the
    client in ``appid``/``appidacr``; a v2 token (``ver`` "2.0": an API whose manifest
    asks for v2) in ``azp``/``azpacr``. Neither carries the other's pair. Without a
    ``ver`` the pair present is read, v1's first.
    """

    app_claim: str
    acr_claim: str
    app: object
    acr: object


def client_claims(claims: Mapping[str, object]) -> ClientClaims:
    ver = claims.get("ver")
    if ver == "2.0" or (ver != "1.0" and "appid" not in claims and "azp" in claims):
        names = ("azp", "azpacr")
    else:
        names = ("appid", "appidacr")
    return ClientClaims(*names, claims.get(names[0]), claims.get(names[1]))


# What the acr claims say: 1 = a client secret, 2 = a certificate (0 = a public client).
ACR_OF_KIND: Mapping[CredentialKind, str] = {
    CredentialKind.SECRET: "1",
    CredentialKind.CERTIFICATE: "2",
}
_ACR_WORDS: Mapping[str, str] = {"0": "no credential (public client)", "1": "a client secret",
                                  "2": "a certificate"}


def judge_claims(
    claims: Mapping[str, object],
    *,
    client_id: str,
    tenant_id: str,
    expected_roles: Collection[str],
    credential_kind: CredentialKind,
) -> AttemptVerdict:
    """A token was issued; is it the token this credential should get?"""
    who = client_claims(claims)
    if not isinstance(who.app, str) or who.app.lower() != client_id.lower():
        return AttemptVerdict(
            AttemptKind.FATAL,
            f"token was issued to {who.app!r} ({who.app_claim}), not {client_id}")
    tid = claims.get("tid")
    if not isinstance(tid, str) or tid.lower() != tenant_id.lower():
        return AttemptVerdict(AttemptKind.FATAL, f"token tenant {tid!r} is not {tenant_id}")
    want_acr = ACR_OF_KIND[credential_kind]
    # A token that does not say how the client authenticated is still one the new
    # credential got; one that says something else proves another credential.
    if who.acr is not None and str(who.acr) != want_acr:
        said = _ACR_WORDS.get(str(who.acr), "something else")
        return AttemptVerdict(
            AttemptKind.FATAL,
            f"token says the client authenticated with {said} ({who.acr_claim}={who.acr}), "
            f"expected {_ACR_WORDS[want_acr]} ({who.acr_claim}={want_acr})",
        )
    roles_claim = claims.get("roles") or []
    roles = (
        {r for r in roles_claim if isinstance(r, str)} if isinstance(roles_claim, list) else set()
    )
    missing = sorted(set(expected_roles) - roles)
    if missing:
        return AttemptVerdict(
            AttemptKind.FATAL,
            f"token lacks expected app role(s) {', '.join(missing)}: "
            "grant them and give admin consent for the app",
        )
    return AttemptVerdict(AttemptKind.SUCCESS, "token issued with the expected claims")


def judge_refusal(
    error_code: str | None, message: str | None, status: int | None = None
) -> AttemptVerdict:
    if error_code in NOT_PROPAGATED_YET:
        return AttemptVerdict(AttemptKind.NOT_YET, f"{error_code}: not accepted yet")
    if error_code is None and status is not None and 400 <= status < 500 and status not in (
        408, 429
    ):
        # Entra words every refusal with an AADSTS code; a bare 4xx comes from something
        # else answering at the authority host, and asking again will not change it.
        return AttemptVerdict(
            AttemptKind.FATAL,
            f"the token endpoint refused with HTTP {status} and no AADSTS code "
            f"({message or 'no message'}); check the authority host",
        )
    if error_code is None:
        return AttemptVerdict(AttemptKind.TRANSIENT, message or "token request failed")
    if error_code in HINTS:
        return AttemptVerdict(AttemptKind.FATAL, f"{error_code}: {HINTS[error_code]}")
    return AttemptVerdict(AttemptKind.FATAL, f"{error_code}: {message or 'refused'}")


@dataclass(frozen=True, slots=True)
class VerifyProgress:
    """Consecutive-success counter; immutable so the loop's state is easy to test."""

    required: int
    consecutive: int = 0
    attempts: int = 0
    refusals: int = 0

    def record(self, verdict: AttemptVerdict) -> VerifyProgress:
        if verdict.kind is AttemptKind.SUCCESS:
            return VerifyProgress(
                self.required, self.consecutive + 1, self.attempts + 1, self.refusals
            )
        return VerifyProgress(self.required, 0, self.attempts + 1, self.refusals + 1)

    @property
    def proven(self) -> bool:
        return self.consecutive >= self.required
