"""A Graph stand-in over HTTPS that answers application reads with hand-made bodies.

The emulator only ever answers well-formed Graph; these tests need the odd, broken
and surprising answers the real service (or a proxy in front of it) can give. Reads
of ``/v1.0/applications`` come from :attr:`CraftedGraph.pages` and
:attr:`CraftedGraph.apps`; every other request is passed on to the emulator, so a
code path that wrongly carries on still changes the emulated tenant, where a test
can see it. Tokens still come from the emulator's real token endpoint.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rotator.emulator.pki import make_tls_material
from rotator.emulator.runner import RunningEmulator

# A body served as is (not as JSON): broken JSON, HTML error pages, empty bodies.
JSON_TYPE = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false"


@dataclass(frozen=True)
class Raw:
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    status: int = 200


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    query: str
    authorized: bool


@dataclass
class CraftedGraph:
    base_url: str  # ends in /v1.0, like ROTATOR_GRAPH_URL
    ca_bundle: Path  # the emulator's CA and this server's CA together
    upstream: str
    upstream_ca: Path
    # Page n of GET /applications; a dict is sent as JSON and, unless it names its own
    # @odata.nextLink, gets one pointing at page n+1 when there is one.
    pages: list[object] = field(default_factory=list)
    # GET /applications(appId='...') by lower-case app id.
    apps: dict[str, object] = field(default_factory=dict)
    # GET /applications/{id} by lower-case object id.
    objects: dict[str, object] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    # The single page of GET /servicePrincipals: none unless a test says otherwise, so
    # the crafted applications are the whole tenant.
    sp_page: object = field(default_factory=lambda: {"value": []})

    def reset(self) -> None:
        self.sp_page = {"value": []}
        self.pages = []
        self.apps = {}
        self.objects = {}
        self.received.clear()

    def page_url(self, n: int) -> str:
        return f"{self.base_url}/applications?$top=999&$skiptoken=page{n}"

    def env(self, emu: RunningEmulator) -> dict[str, str]:
        """The emulator's settings with Graph pointed here."""
        return {**emu.env, "ROTATOR_GRAPH_URL": self.base_url,
                "ROTATOR_CA_BUNDLE": str(self.ca_bundle)}

    def writes(self) -> list[Received]:
        return [r for r in self.received if r.method != "GET"]

    # ------------------------------------------------------------------ serving

    def _reply(self, body: object, next_link: str | None = None) -> Response:
        if isinstance(body, Raw):
            return Response(body.body, status_code=body.status,
                            headers={"content-type": body.content_type})
        if isinstance(body, dict) and next_link and "@odata.nextLink" not in body:
            body = {**body, "@odata.nextLink": next_link}
        return Response(json.dumps(body).encode(), headers={"content-type": JSON_TYPE})

    async def _list(self, request: Request) -> Response:
        token = request.query_params.get("$skiptoken", "page0")
        n = int(token.removeprefix("page"))
        if n >= len(self.pages):
            return self._reply(Raw(b'{"error":{"code":"Request_BadRequest"}}',
                                   "application/json", 400))
        nxt = self.page_url(n + 1) if n + 1 < len(self.pages) else None
        return self._reply(self.pages[n], nxt)

    async def handle(self, request: Request) -> Response:
        path = request.url.path
        if (request.method == "GET" and path == "/v1.0/applications"
                and "federatedIdentityCredentials" in request.query_params.get("$filter", "")):
            # Which apps hold federated credentials (one advanced query a scan): none of
            # the crafted ones. Not recorded: the tests here count reads of the listing.
            return self._reply({"@odata.count": 0, "value": []})
        self.received.append(Received(request.method, path, request.url.query,
                                      request.headers.get("authorization", "").startswith(
                                          "Bearer ")))
        if request.method == "GET" and path == "/v1.0/applications":
            return await self._list(request)
        if request.method == "GET" and path == "/v1.0/servicePrincipals":
            return self._reply(self.sp_page)
        if request.method == "GET" and path.startswith("/v1.0/applications(appId="):
            app_id = path.split("'")[1].lower() if "'" in path else ""
            if app_id in self.apps:
                return self._reply(self.apps[app_id])
        if request.method == "GET" and path.startswith("/v1.0/applications/"):
            object_id = path.removeprefix("/v1.0/applications/").lower()
            if object_id in self.objects:
                return self._reply(self.objects[object_id])
        return await self._proxy(request)

    async def _proxy(self, request: Request) -> Response:
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("host", "content-length")}
        async with httpx.AsyncClient(verify=ssl.create_default_context(
                cafile=str(self.upstream_ca))) as client:
            upstream = await client.request(
                request.method, f"{self.upstream}{request.url.path}",
                params=request.url.query, headers=headers, content=await request.body())
        keep = {k: v for k, v in upstream.headers.items()
                if k.lower() in ("content-type", "retry-after", "location")}
        return Response(upstream.content, status_code=upstream.status_code, headers=keep)


@contextmanager
def crafted_graph(emu: RunningEmulator) -> Iterator[CraftedGraph]:
    tls = make_tls_material()
    with tempfile.TemporaryDirectory(prefix="crafted-graph-") as tmp:
        folder = Path(tmp)
        cert, key, bundle = folder / "server.pem", folder / "server.key", folder / "ca.pem"
        cert.write_bytes(tls.server_cert_pem + tls.ca_cert_pem)
        key.write_bytes(tls.server_key_pem)
        bundle.write_bytes(emu.ca_file.read_bytes() + b"\n" + tls.ca_cert_pem)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
        graph = CraftedGraph(f"https://127.0.0.1:{port}/v1.0", bundle, emu.base_url,
                             emu.ca_file)
        app = Starlette(routes=[Route("/{path:path}", graph.handle,
                                      methods=["GET", "POST", "PATCH", "DELETE", "PUT"])])
        server = uvicorn.Server(uvicorn.Config(
            app, ssl_certfile=str(cert), ssl_keyfile=str(key), log_level="warning",
            access_log=False, lifespan="off", timeout_graceful_shutdown=1))
        thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])),
                                  name="crafted-graph", daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the crafted Graph server did not start")
            time.sleep(0.02)
        try:
            yield graph
        finally:
            # Clients keep connections alive; there is nothing in flight worth waiting for.
            server.should_exit = server.force_exit = True
            thread.join(timeout=5)
            sock.close()
