"""What every route needs: the tenant, the faults, the keys, and the public base URL."""

from __future__ import annotations

from dataclasses import dataclass, field

from rotator.emulator.faults import Faults
from rotator.emulator.jws import AccessTokens
from rotator.emulator.pki import SigningKey
from rotator.emulator.signins import SignInLog
from rotator.emulator.tenant import Tenant


@dataclass
class EmulatorState:
    tenant: Tenant
    faults: Faults
    base_url: str  # https://127.0.0.1:PORT, no trailing slash
    signing_key: SigningKey = field(default_factory=SigningKey)
    tokens: AccessTokens = field(init=False)
    # Successful token requests per credential: the credential usage report.
    signins: SignInLog = field(default_factory=SignInLog)

    def __post_init__(self) -> None:
        self.tokens = AccessTokens(self.signing_key, self.tenant.tenant_id, self.issuer)

    @property
    def issuer(self) -> str:
        return f"{self.base_url}/{self.tenant.tenant_id}/v2.0"

    @property
    def authority(self) -> str:
        return f"{self.base_url}/{self.tenant.tenant_id}"
