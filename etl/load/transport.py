"""A lean HTTP/1.1 keep-alive transport for httpx: the loader's hot path.

httpx's default transport (httpcore) costs about 0.85 ms of CPU a request on this
class of machine, and its pool scans every connection for every request, so 64
connections cost 3 ms: the client, not the API, would cap an unthrottled load at
~1,100 events/s. This transport keeps what the loader needs and nothing else: a
pool of asyncio stream connections per origin, one request at a time on each,
TLS with httpx's SSL context, and httpx's exception classes, so the retry rules see what they
would see with httpcore. It plugs in below `httpx.AsyncClient`, so the loader's
code (and a test's ASGITransport) is unchanged.

The HTTP/1.1 framing is written out here (status line, headers, then a body by
Content-Length, chunked, or closed by the server) rather than done by h11: h11
checks every header of every request and answer and was 30 % of the loader's CPU
(320 -> 220 us an event, measured with benchmarks/load_throughput.py).

Not covered, on purpose: HTTP/2, proxies (the loader uses httpx's own transport
when a proxy is configured), HEAD requests, request bodies larger than memory.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import defaultdict

import httpx

Origin = tuple[str, str, int]


class _Connection:
    """One keep-alive connection, one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.keep_alive = True

    @property
    def reusable(self) -> bool:
        """Kept alive by the last answer, and not closed by the server while idle."""
        return self.keep_alive and not (self.reader.at_eof() or self.writer.is_closing())

    async def exchange(self, request: httpx.Request, body: bytes) -> httpx.Response:
        head = [b"%s %s HTTP/1.1\r\n" % (request.method.encode(), request.url.raw_path)]
        head += [b"%s: %s\r\n" % pair for pair in request.headers.raw]
        head.append(b"\r\n")
        self.writer.write(b"".join(head) + body)
        reader = self.reader
        while True:  # 1xx answers are informational: the real one follows
            lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
            version, status_text, *reason = lines[0].split(b" ", 2)
            status = int(status_text)
            if not 100 <= status < 200:
                break
        headers = [_header(line) for line in lines[1:] if line]
        fields = {name.lower(): value for name, value in headers}
        length = fields.get(b"content-length")
        if b"chunked" in fields.get(b"transfer-encoding", b"").lower():
            content = await self._chunked()
        elif length is not None:
            content = await reader.readexactly(int(length))
        elif status in (204, 304):
            content = b""
        else:  # delimited by the server closing the connection
            content = await reader.read()
            self.keep_alive = False
        if version != b"HTTP/1.1" or fields.get(b"connection", b"").lower() == b"close":
            self.keep_alive = False
        return httpx.Response(
            status,
            headers=headers,
            stream=httpx.ByteStream(content),
            request=request,
            extensions={"http_version": version, "reason_phrase": reason[0] if reason else b""},
        )

    async def _chunked(self) -> bytes:
        reader, chunks = self.reader, []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            chunks.append((await reader.readexactly(size + 2))[:-2])
        while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
            pass
        return b"".join(chunks)

    def close(self) -> None:
        self.writer.close()


def _header(line: bytes) -> tuple[bytes, bytes]:
    name, colon, value = line.partition(b":")
    if not colon:
        raise ValueError("a header line without a colon")
    return name.strip(), value.strip()


class KeepAliveTransport(httpx.AsyncBaseTransport):
    """Up to `max_connections` keep-alive HTTP/1.1 connections, reused last-in first-out.

        client = httpx.AsyncClient(transport=KeepAliveTransport(64, timeout=30.0))
    """

    def __init__(
        self, max_connections: int, timeout: float, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._timeout = timeout
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: defaultdict[Origin, list[_Connection]] = defaultdict(list)
        self._ssl = ssl_context  # None: httpx's, made on the first https connection

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        body = await request.aread()
        async with self._slots:
            idle = self._idle[origin]
            connection = None
            while idle and connection is None:
                candidate = idle.pop()
                if candidate.reusable:
                    connection = candidate
                else:
                    candidate.close()
            if connection is None:
                connection = await self._connect(origin, request)
            try:
                async with asyncio.timeout(self._timeout):
                    response = await connection.exchange(request, body)
            except TimeoutError:
                connection.close()
                message = f"no answer within {self._timeout:g} s"
                raise httpx.ReadTimeout(message, request=request) from None
            except EOFError as exc:
                connection.close()
                message = "the server disconnected without sending a complete answer"
                raise httpx.RemoteProtocolError(message, request=request) from exc
            except (asyncio.LimitOverrunError, ValueError) as exc:
                connection.close()
                message = "the server's answer is not HTTP/1.1"
                raise httpx.RemoteProtocolError(message, request=request) from exc
            except OSError as exc:
                connection.close()
                raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc
            except BaseException:
                connection.close()
                raise
            if connection.reusable:
                idle.append(connection)
            else:
                connection.close()
        return response

    async def _connect(self, origin: Origin, request: httpx.Request) -> _Connection:
        scheme, host, port = origin
        context = None
        if scheme == "https":
            context = self._ssl = self._ssl or httpx.create_ssl_context()  # httpx's CA bundle
        try:
            async with asyncio.timeout(self._timeout):
                reader, writer = await asyncio.open_connection(host, port, ssl=context)
        except TimeoutError as exc:
            message = f"could not connect to {host}:{port} in time"
            raise httpx.ConnectTimeout(message, request=request) from exc
        except OSError as exc:
            message = f"could not connect to {host}:{port}: {exc}"
            raise httpx.ConnectError(message, request=request) from exc
        return _Connection(reader, writer)

    async def aclose(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()
