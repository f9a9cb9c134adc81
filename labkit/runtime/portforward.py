"""A local TCP port that forwards each connection to a ready pod of a Service.

Like `kubectl port-forward svc/<name>`, but each new connection picks a ready pod again, so
a forward survives the crash scenarios (a killed pod is replaced, the next request reaches the
new one). The tunnel itself comes from `KubeApi.port_forward`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

BUFFER = 65536


def relay(a: socket.socket, b: socket.socket, on_close: Callable[[], None] = lambda: None) -> None:
    """Copy bytes both ways until either side closes; then close both."""
    done = threading.Event()

    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(BUFFER)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
            done.set()

    t1 = threading.Thread(target=pump, args=(a, b), daemon=True)
    t2 = threading.Thread(target=pump, args=(b, a), daemon=True)
    t1.start()
    t2.start()
    t1.join()
    t2.join()
    for s in (a, b):
        with contextlib.suppress(OSError):
            s.close()
    on_close()


def http_error(message: str) -> bytes:
    """A 502 answer carrying the reason a tunnel failed, for an HTTP client on the local port."""
    body = (message.strip() + "\n").encode("utf-8")
    head = ("HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nX-Labkit-Error: port-forward\r\n"
            "Connection: close\r\n\r\n")
    return head.encode("ascii") + body


class PortForwarder:
    """Listens on 127.0.0.1:<free port>; `connect()` opens the upstream for each client.

    When the tunnel cannot be opened (RBAC, no ready pod), an HTTP forward (`http=True`)
    answers 502 with the one-sentence reason, so the caller sees why instead of a reset
    connection; other forwards (PostgreSQL) just close. `errors` keeps every reason.
    """

    def __init__(self, connect: Callable[[], tuple[socket.socket, Callable[[], None]]],
                 host: str = "127.0.0.1", port: int = 0, *, http: bool = False) -> None:
        self._connect = connect
        self.http = http
        self._server = socket.create_server((host, port))
        self._server.settimeout(0.5)
        self.host, self.port = self._server.getsockname()[:2]
        self._stop = threading.Event()
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True,
                                        name=f"labkit-port-forward-{self.port}")
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        try:
            upstream, close = self._connect()
        except Exception as exc:  # no ready pod, API error (a ClusterError: one sentence)
            self.errors.append(str(exc))
            with contextlib.suppress(OSError):
                if self.http:
                    client.settimeout(2)
                    client.recv(BUFFER)  # the request: closing with it unread would reset
                    client.sendall(http_error(str(exc)))
                    client.shutdown(socket.SHUT_WR)
                client.close()
            return
        relay(client, upstream, close)

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._server.close()
        self._thread.join(timeout=2)
