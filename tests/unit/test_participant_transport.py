"""The orchestrator's HTTP transport at the wire: real sockets on loopback, answers framed the
ways an HTTP/1.1 server may frame them (Content-Length, chunked, Connection: close, 204, a 100
Continue first), each read to the end and the connection kept or dropped as the answer says."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from ecommerce.domain import saga as s
from ecommerce.saga.participants import HttpParticipants

BODY = b'{"status":"active","id":"u1"}'


class Server:
    """Answers each request on a connection with the next canned reply; counts connections."""

    def __init__(self, replies: list[bytes]) -> None:
        self.replies = list(replies)
        self.requests: list[bytes] = []
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.replies:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while self.replies:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(buf) < length:
                    buf += conn.recv(65536)
                self.requests.append(head)
                buf = buf[length:]
                reply = self.replies.pop(0)
                conn.sendall(reply)
                if b"Connection: close" in reply:
                    return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[type[Server]]:
    made: list[Server] = []

    def make(replies: list[bytes]) -> Server:
        srv = Server(replies)
        made.append(srv)
        return srv

    yield make  # type: ignore[misc]
    for srv in made:
        srv.close()


def participants(port: int) -> HttpParticipants:
    return HttpParticipants({p: f"http://127.0.0.1:{port}" for p in s.PARTICIPANTS}, timeout=5)


def saga() -> s.SagaState:
    return s.SagaState("t1", status="running", user_id="u1")


def test_answers_framed_every_way_are_read_whole_on_one_kept_alive_connection(serve) -> None:
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json"
               b"\r\n\r\n5\r\n" + BODY[:5] + b"\r\n" + f"{len(BODY) - 5:x}".encode() + b"\r\n"
               + BODY[5:] + b"\r\n0\r\n\r\n")
    sized = (b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nX-Dup: a\r\nX-Dup: b\r\n\r\n%s"
             % (len(BODY), BODY))
    continued = b"HTTP/1.1 100 Continue\r\n\r\n" + sized
    srv = serve([chunked, sized, continued])
    parts = participants(srv.port)
    try:
        for _ in range(3):
            status, body = parts._send(s.request_for("validate_user", saga()))
            assert (status, body) == (200, BODY)
        assert srv.connections == 1  # all three on one keep-alive connection
        assert all(b"Idempotency-Key: t1:validate_user" in r for r in srv.requests)
    finally:
        parts.close()


def test_connection_close_and_no_content_end_the_answer_and_a_new_connection_follows(
        serve) -> None:
    closing = b"HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n" + b'{"detail":"no"}'
    empty = b"HTTP/1.1 204 No Content\r\n\r\n"
    srv = serve([closing, empty])
    parts = participants(srv.port)
    try:
        assert parts._send(s.request_for("validate_user", saga())) == (404, b'{"detail":"no"}')
        assert parts._send(s.request_for("validate_user", saga())) == (204, b"")
        assert srv.connections == 2  # the server closed the first one
    finally:
        parts.close()


def test_a_garbled_status_line_is_a_transient_failure_not_a_crash(serve) -> None:
    srv = serve([b"SPDY/9 200 OK\r\n\r\n"])
    parts = participants(srv.port)
    try:
        outcome = parts.call("validate_user", "action", saga())
        assert isinstance(outcome, s.Transient)
    finally:
        parts.close()
