"""The lean transport against hostile servers on loopback: bounded answers, no injected header,
and arbitrary bytes (hypothesis) that never hang it, grow it, or raise anything but httpx's errors.
"""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Awaitable, Callable

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from test_load import body, deliver, destination, make_events

from etl import wire
from etl.errors import ConfigRefused
from etl.load.transport import MAX_HEAD_BYTES, KeepAliveTransport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
LIMIT = 64 * 1024
BLOCK = b"x" * 65536


async def post_to(
    handler: Handler,
    *,
    limit: int = LIMIT,
    timeout: float = 5.0,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """One POST through a fresh KeepAliveTransport to a one-off asyncio server."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = KeepAliveTransport(1, timeout=timeout, max_response_bytes=limit)
    try:
        async with httpx.AsyncClient(transport=transport) as client:
            return await client.post(f"http://127.0.0.1:{port}/x", content=b"{}", headers=headers)
    finally:
        server.close()


def answering(head: bytes, *, blocks: int = 0, tail: bytes = b"") -> Handler:
    """A server that reads the request, sends `head`, then up to `blocks` of BLOCK (each
    `frame`d), then `tail`, and closes; it stops early when the client hangs up."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(2)
            writer.write(head)
            for _ in range(blocks):
                writer.write(BLOCK if b"chunked" not in head else b"10000\r\n" + BLOCK + b"\r\n")
                await writer.drain()
            writer.write(tail)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return handle


@pytest.mark.parametrize(
    ("head", "blocks", "problem"),
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2147483648\r\n\r\n",
            0,
            "Content-Length 2147483648",
            id="huge-content-length",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            512,
            f"more than {LIMIT} bytes of body",
            id="endless-chunked",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n",
            512,
            f"more than {LIMIT} bytes of body",
            id="endless-close-delimited",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nx-pad: ",
            512,
            f"more than {MAX_HEAD_BYTES} bytes of status line and headers",
            id="endless-header",
        ),
    ],
)
def test_an_answer_over_the_bound_is_a_transport_error_whatever_its_framing(
    head: bytes, blocks: int, problem: str
) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(httpx.RemoteProtocolError) as raised:
            asyncio.run(post_to(answering(head, blocks=blocks)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(raised.value) == f"the server's answer is too large ({problem}); connection closed"
    assert isinstance(raised.value, httpx.TransportError)  # what the loader retries
    assert peak < 8 * LIMIT + 4 * len(BLOCK)  # the 32 MiB on offer never came in


def test_an_answer_at_the_bound_is_read_whole() -> None:
    content = b"y" * LIMIT
    head = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % LIMIT
    response = asyncio.run(post_to(answering(head + content)))
    assert (response.status_code, response.content) == (200, content)


def test_a_too_large_answer_is_retried_and_the_retry_can_succeed(
    serve: Callable[[Starlette], str],
) -> None:
    answers: list[int] = []

    async def post(request: Request) -> Response:
        answers.append(len(answers))
        if len(answers) == 1:
            return Response(b"z" * (2 * LIMIT), 200)
        return Response(b'{"id": "ok"}', 200)

    base_url = serve(Starlette(routes=[Route(wire.DEFAULT_PATH, post, methods=["POST"])]))
    dest = destination(base_url=base_url, concurrency=1, max_retries=2, max_response_bytes=LIMIT)
    outcomes, stats = deliver(dest, make_events([body(0)]))
    assert [(o.status.value, o.attempts) for o in outcomes] == [("delivered", 2)]
    assert stats.status_counts == {"connection": 1, 200: 1}


@pytest.mark.parametrize(
    "headers",
    [
        {"x-yotpo-token": "abc\r\nX-Injected: 1"},
        {"x-yotpo-token": "abc\nX-Injected: 1"},
        {"x-yotpo-token": "abc\rdef"},
        {"x-yotpo-token": "abc\x00def"},
        {"x-bad\r\nname": "v"},
    ],
    ids=["crlf", "lf", "cr", "nul", "in-the-name"],
)
def test_a_header_with_cr_lf_or_nul_is_refused_before_a_byte_is_sent(
    headers: dict[str, str],
) -> None:
    received: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read(65536))
        writer.close()

    with pytest.raises(httpx.LocalProtocolError, match="holds CR, LF or NUL") as raised:
        asyncio.run(post_to(record, headers=headers))
    assert "abc" not in str(raised.value) and "Injected" not in str(raised.value)
    assert received in ([], [b""])  # connected at most; nothing written


def test_a_token_with_a_line_break_aborts_the_run_and_injects_nothing(sandbox) -> None:
    server = sandbox(rate_limit=None)
    dest = destination(server).model_copy(
        update={"token": SecretStr(server.token + "\r\nX-Injected: 1")}
    )  # as if the definition-time check were bypassed: the transport still refuses
    with pytest.raises(ConfigRefused, match="holds CR, LF or NUL") as raised:
        deliver(dest, make_events([body(n) for n in range(20)]))
    assert server.token not in str(raised.value)
    assert server.stats("store-load")["requests"] == 0


# -- fuzz: arbitrary bytes from a real socket ---------------------------------------------------
HTTPISH = st.builds(
    lambda status, headers, rest: b"HTTP/1.1 " + status + b"\r\n" + headers + b"\r\n" + rest,
    st.sampled_from([b"200 OK", b"100 Continue", b"204 No Content", b"301 X", b"999 ?", b"20"]),
    st.lists(
        st.sampled_from(
            [
                b"content-length: 5",
                b"content-length: -1",
                b"content-length: 99999999",
                b"transfer-encoding: chunked",
                b"connection: close",
                b"x: \x00\xff",
                b"no colon",
                b"content-length: 2\r\ncontent-length: 3",
            ]
        ),
        max_size=4,
    ).map(lambda lines: b"".join(line + b"\r\n" for line in lines)),
    st.binary(max_size=600),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answer=st.one_of(st.binary(max_size=2048), HTTPISH), close=st.booleans())
def test_arbitrary_bytes_never_hang_grow_or_raise_anything_but_httpx_errors(
    answer: bytes, close: bool
) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
            if not close:  # leave it open: the client must end on its own (timeout)
                await asyncio.sleep(1.5)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    try:
        response = asyncio.run(post_to(handle, limit=1024, timeout=0.5))
    except httpx.TransportError:
        return
    assert 100 <= response.status_code <= 999
    assert len(response.content) <= 1024
