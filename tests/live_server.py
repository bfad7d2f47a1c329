"""A real uvicorn server in a background thread, for the tests that need real sockets (load, client
aborts, WebSockets, the browser page): one copy of the start / wait / stop steps."""

from __future__ import annotations

import socket
import threading
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(app, **config):  # noqa: ANN001, ANN003, ANN201
    """Start ``app`` on a free loopback port (``config``: more uvicorn.Config options); returns
    (server, thread) once it accepts connections (``server.config.port`` is its port)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "uvicorn did not start within 10 s"
    return server, thread


def stop_server(server, thread) -> None:  # noqa: ANN001
    server.should_exit = True
    thread.join(timeout=10)
