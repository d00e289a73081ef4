"""A lean HTTP/1.1 keep-alive transport for httpx: the loader's hot path.

httpx's default transport (httpcore) costs about 0.85 ms of CPU a request on this
class of machine, and its pool scans every connection for every request, so 64
connections cost 3 ms: the client, not the API, would cap an unthrottled load at
~1,100 events/s. This transport keeps what the loader needs and nothing else: a
pool of asyncio stream connections per origin, one request at a time on each,
TLS with httpx's SSL context, and httpx's exception classes, so the retry rules see what they
would see with httpcore. It plugs in below `httpx.AsyncClient`, so the loader's
code (and a test's ASGITransport) is unchanged.

Answers are parsed by httptools (llhttp, Node.js's parser: status line, headers,
Content-Length, chunked or close-delimited bodies, 1xx answers) rather than by hand,
and h11 is not used: it checks every header of every request and answer in Python and
was 30 % of the loader's CPU. What an API may send is bounded, whatever the framing: at
most `MAX_HEAD_BYTES` of status line and headers and `max_response_bytes` of body, else
the request fails with httpx.RemoteProtocolError (a transport error: retried, the
connection closed), and no answer is ever held in memory beyond those bounds. Requests
are checked the way h11 checks them: a header name or value holding CR, LF or NUL is
refused with httpx.LocalProtocolError before a byte is sent, so no value can inject a
header.

Not covered, on purpose: HTTP/2, proxies (the loader uses httpx's own transport
when a proxy is configured), HEAD requests, request bodies larger than memory.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import defaultdict

import httptools
import httpx

Origin = tuple[str, str, int]

#: Status line and headers of one answer (1xx answers included) may take this much.
MAX_HEAD_BYTES = 64 * 1024
#: The default bound on one answer's body (destination.max_response_bytes).
MAX_RESPONSE_BYTES = 1 << 20
#: How much is read from the socket at a time.
READ_BYTES = 64 * 1024


class AnswerTooLarge(Exception):
    """An answer's head or body went past its bound."""


class _Answer:
    """The httptools callbacks of one exchange: the final answer's status, headers and body."""

    __slots__ = (
        "body",
        "chunked",
        "complete",
        "has_length",
        "head_done",
        "headers",
        "keep_alive",
        "limit",
        "parser",
        "reason",
        "size",
        "status",
    )

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parser = httptools.HttpResponseParser(self)
        self.complete = False
        self.on_message_begin()

    def on_message_begin(self) -> None:
        if self.complete:  # bytes after the answer: not ours to read, the connection ends
            raise _Surplus
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.reason = b""
        self.size = self.status = 0
        self.head_done = self.keep_alive = self.has_length = self.chunked = False

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        lowered = name.lower()
        if lowered == b"content-length":
            self.has_length = True
            if int(value) > self.limit:  # no need to receive it to refuse it
                raise AnswerTooLarge(f"Content-Length {int(value)}")
        elif lowered == b"transfer-encoding":
            self.chunked = True

    def on_headers_complete(self) -> None:
        self.head_done = True
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.limit:
            raise AnswerTooLarge(f"more than {self.limit} bytes of body")
        self.body.append(body)

    def on_message_complete(self) -> None:
        if not 100 <= self.status < 200:  # a 1xx is informational: the real answer follows
            self.complete = True

    def feed(self, data: bytes) -> None:
        """Parse `data`; raise AnswerTooLarge or ValueError (not HTTP)."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _Surplus):
                self.keep_alive = False
            elif isinstance(cause, AnswerTooLarge):
                raise cause from None
            else:
                raise ValueError(str(exc)) from cause
        except httptools.HttpParserUpgrade as exc:
            raise ValueError("the server switched protocols") from exc
        except httptools.HttpParserError as exc:
            raise ValueError(str(exc)) from exc

    def end_of_stream(self) -> None:
        """The server closed the connection: the end of a close-delimited body, or too soon."""
        if not self.head_done or self.has_length or self.chunked:
            raise EOFError
        self.complete, self.keep_alive = True, False


class _Surplus(Exception):
    """The server sent more than one answer: what follows the first is dropped."""


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

    async def exchange(self, request: httpx.Request, body: bytes, limit: int) -> httpx.Response:
        self.writer.write(_head(request) + body)
        answer, received, reader = _Answer(limit), 0, self.reader
        while not answer.complete:
            data = await reader.read(READ_BYTES)
            if not data:
                answer.end_of_stream()
                break
            received += len(data)
            if not answer.head_done and received > MAX_HEAD_BYTES:
                raise AnswerTooLarge(f"more than {MAX_HEAD_BYTES} bytes of status line and headers")
            if received > 2 * limit + MAX_HEAD_BYTES:  # chunk framing may not grow unbounded
                raise AnswerTooLarge(f"more than {2 * limit + MAX_HEAD_BYTES} bytes in all")
            answer.feed(data)
        self.keep_alive = answer.keep_alive
        version = b"HTTP/" + answer.parser.get_http_version().encode()
        return httpx.Response(
            answer.status,
            headers=answer.headers,
            stream=httpx.ByteStream(b"".join(answer.body)),
            request=request,
            extensions={"http_version": version, "reason_phrase": answer.reason},
        )

    def close(self) -> None:
        self.writer.close()


def _head(request: httpx.Request) -> bytes:
    """The request line and headers; LocalProtocolError if a header holds CR, LF or NUL."""
    raw = request.headers.raw
    lines = [b"%s %s HTTP/1.1\r\n" % (request.method.encode(), request.url.raw_path)]
    lines += [b"%s: %s\r\n" % pair for pair in raw]
    lines.append(b"\r\n")
    head = b"".join(lines)
    breaks = len(raw) + 2  # one CRLF ends each line, and the blank one: no more, no NUL
    if head.count(b"\n") != breaks or head.count(b"\r") != breaks or b"\0" in head:
        for name, value in raw:
            if any(c in name + value for c in (b"\r", b"\n", b"\0")):
                raise httpx.LocalProtocolError(
                    f"header {name[:40]!r} holds CR, LF or NUL in its name or value; not sent",
                    request=request,
                )
        raise httpx.LocalProtocolError("the request line holds CR, LF or NUL", request=request)
    return head


class KeepAliveTransport(httpx.AsyncBaseTransport):
    """Up to `max_connections` keep-alive HTTP/1.1 connections, reused last-in first-out.

    client = httpx.AsyncClient(transport=KeepAliveTransport(64, timeout=30.0))
    """

    def __init__(
        self,
        max_connections: int,
        timeout: float,
        ssl_context: ssl.SSLContext | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self._timeout = timeout
        self._limit = max_response_bytes
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
                    response = await connection.exchange(request, body, self._limit)
            except TimeoutError:
                connection.close()
                message = f"no answer within {self._timeout:g} s"
                raise httpx.ReadTimeout(message, request=request) from None
            except EOFError as exc:
                connection.close()
                message = "the server disconnected without sending a complete answer"
                raise httpx.RemoteProtocolError(message, request=request) from exc
            except AnswerTooLarge as exc:
                connection.close()
                message = f"the server's answer is too large ({exc}); connection closed"
                raise httpx.RemoteProtocolError(message, request=request) from None
            except ValueError as exc:
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
