"""A consumer of a rotated secret, as many are: it reads the secret once at start-up and
then asks for a token every second with it, never re-reading.

The demo runs one for the walkthrough client, as a process beside the service; a
command hook on the promoted event ends it (SIGTERM through its pid file) and its
supervisor starts it again, so it reads the new secret. The old credential is retired
on evidence (``retire_when = "unused"``): only once the usage report shows the
consumer moved. Run as a process:

    python -m rotator.cli.demo.consumer VAULT_URL SECRET_NAME APP_ID LOG_FILE PID_FILE

with the emulator's settings in the environment (AZURE_TENANT_ID, AZURE_CLIENT_ID and
AZURE_CLIENT_SECRET to read the vault, ROTATOR_AUTHORITY_HOST, ROTATOR_CA_BUNDLE). Each
token request appends a JSON line to LOG_FILE: when, which key id, a token or the
refusal. Never the secret value.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any


def main(argv: list[str]) -> int:
    from azure.core.exceptions import AzureError
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
            except AzureError as exc:  # a refusal is what the consumer reports
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


def restart_argv(pid_file: Path) -> list[str]:
    """The command hook that ends the consumer (its supervisor starts it again)."""
    return [sys.executable, "-c",
            "import os, signal, sys; os.kill(int(open(sys.argv[1]).read()), signal.SIGTERM)",
            str(pid_file)]


@dataclass
class Consumer:
    """The consumer process and its supervisor, which starts it again whenever it ends."""

    env: Mapping[str, str]
    vault_url: str
    secret_name: str
    app_id: str
    workdir: Path
    module: str = "rotator.cli.demo.consumer"
    cwd: Path | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    starts: int = 0
    _thread: threading.Thread | None = None

    @property
    def log(self) -> Path:
        return self.workdir / "consumer.log"

    @property
    def pid_file(self) -> Path:
        return self.workdir / "consumer.pid"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._supervise, daemon=True,
                                        name="demo-consumer")
        self._thread.start()

    def _supervise(self) -> None:
        args = [self.vault_url, self.secret_name, self.app_id, str(self.log),
                str(self.pid_file)]
        while not self.stop.is_set():
            process = subprocess.Popen(
                [sys.executable, "-m", self.module, *args], env=dict(self.env), cwd=self.cwd,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.starts += 1
            while process.poll() is None and not self.stop.is_set():
                time.sleep(0.05)
            if process.poll() is None:
                process.terminate()
                process.wait(10)

    def close(self) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join(15)

    def entries(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line being written
        return out

    def tokens(self, key_id: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.entries()
                if e["event"] == "token" and (key_id is None or e["key_id"] == key_id)]

    def refusals(self) -> list[dict[str, Any]]:
        return [e for e in self.entries() if e["event"] == "refused"]

    def wait_for_tokens(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.tokens()) >= count:
                return True
            time.sleep(0.2)
        return False


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
