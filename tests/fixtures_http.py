"""A fixture serving any ASGI app over real loopback HTTP(S), for tests of the loader and
its transport against servers that misbehave in ways the sandbox does not."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    """Serve an app with uvicorn on a free loopback port in a thread; yields its base URL.

    `serve(app)` for plain HTTP; `serve(app, ssl_certfile=..., ssl_keyfile=...)` for TLS.
    """
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(app: Starlette, **options: Any) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        config = uvicorn.Config(app, log_level="warning", lifespan="off", **options)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        servers.append((server, thread))
        while not server.started:
            threading.Event().wait(0.01)
        scheme = "https" if "ssl_certfile" in options else "http"
        return f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(5)
