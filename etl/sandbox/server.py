"""Serving the sandbox with uvicorn, tuned so it never bottlenecks the loader."""

from __future__ import annotations

import socket

import uvicorn

from etl.sandbox.app import create_app
from etl.sandbox.config import SandboxConfig

READY = "sandbox listening on http://{host}:{port}"


class _Server(uvicorn.Server):
    """A uvicorn server that says where it listens once it accepts connections."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if sockets and not self.should_exit:
            host, port = sockets[0].getsockname()[:2]
            print(READY.format(host=host, port=port), flush=True)


def serve(config: SandboxConfig, host: str = "127.0.0.1", port: int = 8787) -> None:
    """Serve the sandbox until SIGINT/SIGTERM; port 0 picks a free port (printed when ready).

    Example: `serve(SandboxConfig(rate_limit=None), port=0)` prints
    "sandbox listening on http://127.0.0.1:41234" and blocks.
    """
    sock = _listen(host, port)
    server = _Server(
        uvicorn.Config(
            create_app(config),
            log_level="warning",
            access_log=False,
            lifespan="off",
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=1,  # a slow answer in flight must not hold up a stop
        )
    )
    server.run(sockets=[sock])


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket created with an explicit IPPROTO_TCP.

    asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP; a socket
    made with proto 0 (as `socket.create_server` does) leaves Nagle on, and every
    answer then waits ~40 ms for the client's delayed ACK.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(2048)
    return sock
