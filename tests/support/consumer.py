"""A consumer of a rotated secret, as many are: it reads the secret once at start-up and
then asks for a token every second with it, never re-reading. Run as a process:

    python -m tests.support.consumer VAULT_URL SECRET_NAME APP_ID LOG_FILE PID_FILE

The emulator's settings come from the environment (AZURE_TENANT_ID, AZURE_CLIENT_ID and
AZURE_CLIENT_SECRET to read the vault, ROTATOR_AUTHORITY_HOST, ROTATOR_CA_BUNDLE). Each
token request appends a JSON line to LOG_FILE: when, which key id, ok or the refusal.
SIGTERM ends it (a command hook restarts it that way; its supervisor starts it again).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType


def main(argv: list[str]) -> int:
    from azure.keyvault.secrets import SecretClient

    from rotator.adapters.sdk_clients import sync_secret_credential

    vault_url, secret_name, app_id, log_file, pid_file = argv
    env = os.environ
    tenant, authority, ca = (env["AZURE_TENANT_ID"], env["ROTATOR_AUTHORITY_HOST"],
                             env["ROTATOR_CA_BUNDLE"])
    stop = False

    def on_term(signum: int, frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    Path(pid_file).write_text(str(os.getpid()))
    reader = sync_secret_credential(tenant, env["AZURE_CLIENT_ID"], env["AZURE_CLIENT_SECRET"],
                                    authority_host=authority, ca_bundle=ca)
    client = SecretClient(vault_url, reader, verify_challenge_resource=False,
                          connection_verify=ca)
    secret = client.get_secret(secret_name)  # once, at start-up
    value, key_id = secret.value or "", (secret.properties.tags or {}).get("key_id")
    client.close()
    reader.close()
    with open(log_file, "a", encoding="utf-8") as log:
        log.write(json.dumps({"at": datetime.now(UTC).isoformat(), "event": "started",
                              "key_id": key_id, "pid": os.getpid()}) + "\n")
        log.flush()
        while not stop:
            credential = sync_secret_credential(tenant, app_id, value,
                                                authority_host=authority, ca_bundle=ca)
            entry: dict[str, object] = {"at": datetime.now(UTC).isoformat(), "key_id": key_id}
            try:
                credential.get_token("https://graph.microsoft.com/.default")
                entry["event"] = "token"
            except Exception as exc:  # a refusal is what the test looks for
                entry["event"] = "refused"
                entry["error"] = str(exc).splitlines()[0][:200]
            finally:
                credential.close()
            log.write(json.dumps(entry) + "\n")
            log.flush()
            deadline = time.monotonic() + 1.0
            while not stop and time.monotonic() < deadline:
                time.sleep(0.05)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
