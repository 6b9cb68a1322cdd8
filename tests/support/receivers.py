"""Real receivers on loopback for alert channels: an HTTP webhook server, an SMTP server
with STARTTLS and a login, and dead endpoints (refused, never answering).

The alert tests use the fixtures through their conftest.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message as EmailMsg
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from rotator.emulator.pki import make_tls_material

SMTP_USER = "rotator"
SMTP_PASSWORD = "smtp-pw-canary-5d1e"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    raw: bytes


@dataclass
class HttpReceiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    status: int = 200

    def bodies(self, path: str | None = None) -> list[dict[str, Any]]:
        return [r.body for r in self.requests if path is None or r.path == path]


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver(url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            with lock:
                receiver.requests.append(
                    Received(self.path, dict(self.headers.items()), json.loads(raw), raw)
                )
            self.send_response(receiver.status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def refused_url() -> str:
    """Nothing listens here: connection refused."""
    return f"http://127.0.0.1:{_free_port()}/hook"


@pytest.fixture
def blackhole_url() -> Iterator[str]:
    """Accepts connections and never answers: only a timeout gets a sender out."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
                accepted.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    stop.set()
    thread.join(timeout=2)
    for conn in accepted:
        conn.close()
    sock.close()


@dataclass
class SmtpServer:
    host: str
    port: int
    ca_file: Path
    messages: list[EmailMsg] = field(default_factory=list)
    envelopes: list[Envelope] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[SmtpServer]:
    tls = make_tls_material()
    cert = tmp_path / "smtp-cert.pem"
    key = tmp_path / "smtp-key.pem"
    ca = tmp_path / "smtp-ca.pem"
    cert.write_bytes(tls.server_cert_pem)
    key.write_bytes(tls.server_key_pem)
    ca.write_bytes(tls.ca_cert_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    server = SmtpServer("127.0.0.1", _free_port(), ca)

    class Handler:
        async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
            raw = envelope.content if isinstance(envelope.content, bytes) else b""
            server.messages.append(message_from_bytes(raw))
            server.envelopes.append(envelope)
            return "250 OK"

    def authenticator(smtp: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword) and (
            auth_data.login == SMTP_USER.encode() and auth_data.password == SMTP_PASSWORD.encode()
        ):
            server.logins.append(auth_data.login.decode())
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    controller = Controller(
        Handler(), hostname=server.host, port=server.port, tls_context=context,
        require_starttls=True, authenticator=authenticator, auth_required=True,
        ready_timeout=10,
    )
    controller.start()
    yield server
    controller.stop()
