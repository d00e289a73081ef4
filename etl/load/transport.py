"""A lean HTTP/1.1 keep-alive transport for httpx: the loader's hot path.

httpx's default transport (httpcore) costs about 0.85 ms of CPU a request on this
class of machine, and its pool scans every connection for every request, so 64
connections cost 3 ms: the client, not the API, would cap an unthrottled load at
~1,100 events/s. This transport keeps the parts the loader needs and nothing else:
a pool of asyncio stream connections per origin, one request at a time on each,
h11 for the protocol, TLS through `ssl`, and httpx's exception classes so the
retry rules see what they would see with httpcore. It plugs in below
`httpx.AsyncClient`, so the loader's code (and a test's ASGITransport) is unchanged.

Not covered, on purpose: HTTP/2, proxies (the loader uses httpx's own transport
when a proxy is configured), streaming request bodies larger than memory.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import defaultdict

import h11
import httpx

Origin = tuple[str, str, int]

#: Bytes read from the socket at a time.
READ_SIZE = 65_536


class _Connection:
    """One keep-alive connection and its h11 state machine."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT)

    @property
    def reusable(self) -> bool:
        """Still open at our end and not closed by the server while idle."""
        return not (self.reader.at_eof() or self.writer.is_closing())

    async def exchange(self, request: httpx.Request, body: bytes) -> httpx.Response:
        protocol = self.h11
        target = request.url.raw_path
        data = protocol.send(
            h11.Request(method=request.method, target=target, headers=request.headers.raw)
        )
        if body:
            data += protocol.send(h11.Data(data=body))
        data += protocol.send(h11.EndOfMessage())
        self.writer.write(data)
        chunks: list[bytes] = []
        head: h11.Response | None = None
        while True:
            event = protocol.next_event()
            if event is h11.NEED_DATA:
                received = await self.reader.read(READ_SIZE)
                protocol.receive_data(received)  # b"" tells h11 the server closed
            elif isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                message = "Server disconnected without sending a response."
                raise httpx.RemoteProtocolError(message, request=request)
        assert head is not None  # h11 yields a Response before EndOfMessage
        return httpx.Response(
            head.status_code,
            headers=head.headers.raw_items(),
            stream=httpx.ByteStream(b"".join(chunks)),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": head.reason},
        )

    def next_cycle(self) -> bool:
        """Ready the connection for the next request; False when it must be closed."""
        protocol = self.h11
        if protocol.our_state is h11.DONE and protocol.their_state is h11.DONE:
            protocol.start_next_cycle()
            return self.reusable
        return False

    def close(self) -> None:
        self.writer.close()


class KeepAliveTransport(httpx.AsyncBaseTransport):
    """Up to `max_connections` keep-alive HTTP/1.1 connections, reused last-in first-out.

        client = httpx.AsyncClient(transport=KeepAliveTransport(64, timeout=30.0))
    """

    def __init__(self, max_connections: int, timeout: float) -> None:
        self._timeout = timeout
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: defaultdict[Origin, list[_Connection]] = defaultdict(list)
        self._ssl: ssl.SSLContext | None = None

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
            except h11.ProtocolError as exc:
                connection.close()
                raise httpx.RemoteProtocolError(str(exc), request=request) from exc
            except OSError as exc:
                connection.close()
                raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc
            except BaseException:
                connection.close()
                raise
            if connection.next_cycle():
                idle.append(connection)
            else:
                connection.close()
        return response

    async def _connect(self, origin: Origin, request: httpx.Request) -> _Connection:
        scheme, host, port = origin
        context = None
        if scheme == "https":
            context = self._ssl = self._ssl or ssl.create_default_context()
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
