"""Key Vault's limits on one secret version, checked before anything is created.

A bundle or tag set the vault cannot store must stop a rotation before Graph is
asked for a credential: a secret whose value cannot be staged is lost the moment
it is created.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

MAX_VALUE_BYTES: Final = 25 * 1024
MAX_TAGS: Final = 15
MAX_CONTENT_TYPE_CHARS: Final = 255


def vault_problems(
    *, value_bytes: int | None, content_type: str | None, tags: Mapping[str, str], what: str
) -> list[str]:
    """Why Key Vault would refuse ``what`` (empty when it fits)."""
    problems: list[str] = []
    if value_bytes is not None and value_bytes > MAX_VALUE_BYTES:
        problems.append(f"{what} is {value_bytes} bytes; Key Vault stores at most "
                        f"{MAX_VALUE_BYTES} bytes (25 KB) in one secret")
    if content_type is not None and len(content_type) > MAX_CONTENT_TYPE_CHARS:
        problems.append(f"the content type of {what} is {len(content_type)} characters; "
                        f"Key Vault allows at most {MAX_CONTENT_TYPE_CHARS}")
    if len(tags) > MAX_TAGS:
        problems.append(f"{what} would carry {len(tags)} tags; Key Vault allows at most "
                        f"{MAX_TAGS}")
    return problems
