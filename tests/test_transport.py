"""The lean HTTP/1.1 keep-alive transport (etl/load/transport.py) on loopback: chunked
answers, connection close, refused connections, raw answers, TLS, and when it is used.

Hostile servers (bounded answers, arbitrary bytes) are in test_transport_hostile.py.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from test_load import STORE, destination

from etl import wire
from etl.load.loader import _own_client
from etl.load.transport import KeepAliveTransport


def test_the_transport_reads_chunked_answers_and_honours_connection_close(
    serve: Callable[[Starlette], str],
) -> None:
    peers: list[tuple[str, int]] = []

    async def post(request: Request) -> Response:
        peers.append(request.client)  # type: ignore[arg-type]
        n = len(peers)
        if n == 1:
            parts = (p async for p in _chunks(b'{"id": ', b'"chunked"}'))
            return StreamingResponse(parts, media_type="application/json")
        if n == 2:
            return Response(b'{"id": "closing"}', headers={"connection": "close"})
        return Response(b'{"id": "fresh"}')

    base_url = serve(Starlette(routes=[Route(wire.DEFAULT_PATH, post, methods=["POST"])]))
    url = base_url + wire.DEFAULT_PATH.format(store_id=STORE)

    async def main() -> list[tuple[int, bytes, str | None]]:
        async with httpx.AsyncClient(transport=KeepAliveTransport(1, timeout=5.0)) as client:
            answers = [await client.post(url, content=b"{}") for _ in range(3)]
        return [(a.status_code, a.content, a.headers.get("transfer-encoding")) for a in answers]

    assert asyncio.run(main()) == [
        (200, b'{"id": "chunked"}', "chunked"),
        (200, b'{"id": "closing"}', None),
        (200, b'{"id": "fresh"}', None),
    ]
    assert peers[0] == peers[1] != peers[2]  # kept alive, then a new connection after close


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def test_the_transport_maps_a_refused_connection_to_httpx_connect_error() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]

    async def main() -> None:
        async with httpx.AsyncClient(transport=KeepAliveTransport(1, timeout=5.0)) as client:
            await client.post(f"http://127.0.0.1:{port}/x", content=b"{}")

    with pytest.raises(httpx.ConnectError, match=f"127.0.0.1:{port}"):
        asyncio.run(main())


def test_a_configured_proxy_gets_httpx_own_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    dest = destination(base_url="http://api.example")
    assert isinstance(_own_client(dest)._transport, KeepAliveTransport)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    assert not isinstance(_own_client(dest)._transport, KeepAliveTransport)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param(
            b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{"id": "x"}',
            (200, b'{"id": "x"}'),
            id="closed-by-the-server",
        ),
        pytest.param(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok",
            (201, b"ok"),
            id="informational-first",
        ),
        pytest.param(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", httpx.RemoteProtocolError, id="not-http"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
            httpx.RemoteProtocolError,
            id="cut-short",
        ),
    ],
)
def test_the_transport_reads_raw_answers_exactly(answer: bytes, expected: Any) -> None:
    async def main() -> tuple[int, bytes]:
        async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer_once, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with httpx.AsyncClient(transport=KeepAliveTransport(1, timeout=5.0)) as client:
                response = await client.post(f"http://127.0.0.1:{port}/x", content=b"")
            return response.status_code, response.content
        finally:
            server.close()

    if isinstance(expected, tuple):
        assert asyncio.run(main()) == expected
    else:
        with pytest.raises(expected):
            asyncio.run(main())


def test_the_transport_speaks_tls(serve: Callable[..., str], tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )

    async def post(request: Request) -> Response:
        return Response(await request.body(), media_type="application/json")

    app = Starlette(routes=[Route("/echo", post, methods=["POST"])])
    base_url = serve(app, ssl_certfile=str(cert), ssl_keyfile=str(key))
    trusted = ssl.create_default_context(cafile=str(cert))

    async def main() -> list[bytes]:
        transport = KeepAliveTransport(1, timeout=5.0, ssl_context=trusted)
        async with httpx.AsyncClient(transport=transport) as client:
            answers = [await client.post(f"{base_url}/echo", content=b"%d" % n) for n in (1, 2)]
        return [answer.content for answer in answers]

    assert base_url.startswith("https://")
    assert asyncio.run(main()) == [b"1", b"2"]
