"""Start and stop the emulator: uvicorn with TLS in a daemon thread with its own event loop."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import uvicorn

from rotator.emulator.app import build_app
from rotator.emulator.faults import Faults
from rotator.emulator.pki import make_tls_material
from rotator.emulator.seed import seed_tenant
from rotator.emulator.signins import DEFAULT_LAG_SECONDS, SignInLog
from rotator.emulator.state import EmulatorState
from rotator.emulator.tenant import Tenant

log = logging.getLogger("rotator.emulator")

ENV_FILE_NAME = "rotator-emulator.env"
CA_FILE_NAME = "rotator-emulator-ca.pem"
ENV_KEYS = (
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "ROTATOR_AUTHORITY_HOST",
    "ROTATOR_GRAPH_URL",
    "ROTATOR_VAULT_URL",
    "ROTATOR_CA_BUNDLE",
    "EMULATOR_ADMIN_CLIENT_ID",
    "EMULATOR_ADMIN_CLIENT_SECRET",
)


def _write_private(path: Path, data: bytes, mode: int) -> None:
    """Write via a temp file and rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


class RunningEmulator:
    def __init__(
        self,
        *,
        state: EmulatorState,
        server: uvicorn.Server,
        thread: threading.Thread,
        secret_dir: Path,
        own_workdir: Path | None,
        env_file: Path,
        ca_file: Path,
        port: int,
        sock: socket.socket,
    ) -> None:
        self.state = state
        self._sock = sock
        self.tenant: Tenant = state.tenant
        self.faults: Faults = state.faults
        self.base_url = state.base_url
        self.port = port
        self.env_file = env_file
        self.ca_file = ca_file
        self._server = server
        self._thread = thread
        self._secret_dir = secret_dir
        self._own_workdir = own_workdir
        self.env: dict[str, str] = {
            "AZURE_TENANT_ID": self.tenant.tenant_id,
            "AZURE_CLIENT_ID": self.tenant.rotator_app_id,
            "AZURE_CLIENT_SECRET": self.tenant.rotator_secret,
            "ROTATOR_AUTHORITY_HOST": self.base_url,
            "ROTATOR_GRAPH_URL": f"{self.base_url}/v1.0",
            "ROTATOR_VAULT_URL": self.base_url,
            "ROTATOR_CA_BUNDLE": str(ca_file),
            # The tenant administrator, for tests that set the tenant up through Graph.
            "EMULATOR_ADMIN_CLIENT_ID": self.tenant.admin_app_id,
            "EMULATOR_ADMIN_CLIENT_SECRET": self.tenant.admin_secret,
        }

    @classmethod
    def start(
        cls,
        *,
        apps: int = 20,
        seed: int = 0,
        propagation_seconds: float = 0.0,
        port: int = 0,
        workdir: Path | None = None,
        env_file: Path | None = None,
        faults: Faults | None = None,
        tenant: Tenant | None = None,
        host: str = "127.0.0.1",
        ready_timeout: float = 60.0,
        signin_report_lag_seconds: float = DEFAULT_LAG_SECONDS,
        audit_log: bool = True,
        policy_read: bool = True,
        removal_propagation_seconds: float | None = None,
        graph_consistency_seconds: float = 2.0,
    ) -> RunningEmulator:
        """Seed, bind, serve, wait until TLS connections work, then write CA and env file."""
        own_workdir = None
        if env_file is None:
            if workdir is None:
                workdir = own_workdir = Path(tempfile.mkdtemp(prefix="rotator-emulator-"))
            env_file = Path(workdir) / ENV_FILE_NAME
        env_file = env_file.absolute()
        env_file.parent.mkdir(parents=True, exist_ok=True)
        ca_file = env_file.parent / CA_FILE_NAME

        tenant = tenant or seed_tenant(
            apps,
            seed,
            propagation_seconds,
            audit_log=audit_log,
            policy_read=policy_read,
            removal_propagation_seconds=removal_propagation_seconds,
            graph_consistency_seconds=graph_consistency_seconds,
        )
        tls = make_tls_material()
        # mkdtemp makes the directory 0700: the server key never sits where others can read.
        secret_dir = Path(tempfile.mkdtemp(prefix="rotator-emulator-tls-"))
        cert_path, key_path = secret_dir / "server.pem", secret_dir / "server.key"
        _write_private(cert_path, tls.server_cert_pem + tls.ca_cert_pem, 0o600)
        _write_private(key_path, tls.server_key_pem, 0o600)
        _write_private(ca_file, tls.ca_cert_pem, 0o644)

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            shutil.rmtree(secret_dir, ignore_errors=True)
            raise
        sock.set_inheritable(True)
        bound_port = int(sock.getsockname()[1])
        state = EmulatorState(tenant, faults or Faults(), f"https://{host}:{bound_port}",
                              signins=SignInLog(signin_report_lag_seconds))
        config = uvicorn.Config(
            build_app(state),
            ssl_certfile=str(cert_path),
            ssl_keyfile=str(key_path),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=30,
            # Clients in tests often leave keep-alive connections open; do not wait on them.
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)

        def serve() -> None:
            asyncio.run(server.serve(sockets=[sock]))

        thread = threading.Thread(target=serve, name="rotator-emulator", daemon=True)
        thread.start()
        emulator = cls(
            state=state,
            server=server,
            thread=thread,
            secret_dir=secret_dir,
            own_workdir=own_workdir,
            env_file=env_file,
            ca_file=ca_file,
            port=bound_port,
            sock=sock,
        )
        try:
            emulator._wait_ready(tls.ca_cert_pem, ready_timeout)
        except BaseException:
            emulator.stop()
            raise
        body = "".join(f"{key}={emulator.env[key]}\n" for key in ENV_KEYS)
        _write_private(env_file, body.encode(), 0o600)
        log.info("emulator listening on %s (tenant %s)", emulator.base_url, tenant.tenant_id)
        return emulator

    def _wait_ready(self, ca_pem: bytes, timeout: float) -> None:
        context = ssl.create_default_context(cadata=ca_pem.decode())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._thread.is_alive():
                raise RuntimeError("emulator server thread exited during start")
            if self._server.started:
                try:
                    with (
                        socket.create_connection(("127.0.0.1", self.port), timeout=2) as raw,
                        context.wrap_socket(raw, server_hostname="127.0.0.1"),
                    ):
                        return
                except OSError:
                    pass
            time.sleep(0.02)
        raise TimeoutError("emulator did not accept TLS connections in time")

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout=5)
        self._sock.close()
        shutil.rmtree(self._secret_dir, ignore_errors=True)
        if self._own_workdir is not None:
            shutil.rmtree(self._own_workdir, ignore_errors=True)

    def __enter__(self) -> RunningEmulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextmanager
def start_emulator(
    *,
    apps: int = 20,
    seed: int = 0,
    propagation_seconds: float = 0.0,
    port: int = 0,
    workdir: Path | None = None,
    env_file: Path | None = None,
    faults: Faults | None = None,
    tenant: Tenant | None = None,
    signin_report_lag_seconds: float = DEFAULT_LAG_SECONDS,
    audit_log: bool = True,
    policy_read: bool = True,
    removal_propagation_seconds: float | None = None,
    graph_consistency_seconds: float = 2.0,
) -> Iterator[RunningEmulator]:
    emulator = RunningEmulator.start(
        signin_report_lag_seconds=signin_report_lag_seconds,
        audit_log=audit_log,
        apps=apps,
        seed=seed,
        propagation_seconds=propagation_seconds,
        port=port,
        workdir=workdir,
        env_file=env_file,
        faults=faults,
        tenant=tenant,
        policy_read=policy_read,
        removal_propagation_seconds=removal_propagation_seconds,
        graph_consistency_seconds=graph_consistency_seconds,
    )
    try:
        yield emulator
    finally:
        emulator.stop()
