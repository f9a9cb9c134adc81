"""Calling the saga's participants over HTTP: one attempt, one outcome.

Every request carries `Idempotency-Key: <saga id>:<action>`, so sending it again after a
timeout or a crash returns the first answer and changes nothing (docs/api.md). What the answer
means (success, business refusal, transient failure) is decided by `ecommerce.domain.saga.classify`.

Transport: each worker thread keeps one keep-alive `http.client` connection per participant.
Measured on the lab's 2-core machine, an `httpx.Client` request costs ~0.6 ms of CPU against
~0.2 ms for `http.client`, five calls per saga, in the process that drives every saga (see
labkit/bench/saga.py). Pass `client=httpx.Client(...)` to use httpx instead (tests use that
with `httpx.MockTransport`).
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Mapping
from urllib.parse import urlsplit

import httpx

from ecommerce.config import Settings
from ecommerce.domain import saga as s
from ecommerce.domain.saga import PARTICIPANTS

JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


def participant_urls(settings: Settings | None = None) -> dict[str, str]:
    """Base URL of each participant from LABKIT_<SERVICE>_URL (cluster DNS names otherwise)."""
    settings = settings or Settings.from_env()
    return {name: settings.peer_url(name) for name in PARTICIPANTS}


class _Headers(dict[str, str]):
    """Response headers by lower-case name (the last of repeated ones)."""

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(name.lower(), default)


class _Response(http.client.HTTPResponse):
    """`http.client`'s response with a plain header parse. The standard one builds an
    `email.message.Message` through `email.parser`: measured at a tenth of the orchestrator's
    CPU per saga. The status line, the limits on header count and length and the body framing
    (Content-Length, chunked, Connection: close) stay the standard library's."""

    def begin(self) -> None:
        if self.headers is not None:
            return
        while True:
            version, status, reason = self._read_status()
            if status != http.client.CONTINUE:
                break
            http.client._read_headers(self.fp)
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        headers = _Headers()
        for line in http.client._read_headers(self.fp):
            name, _, value = line.decode("iso-8859-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        self.headers = self.msg = headers
        self.chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        self.chunk_left = None
        self.will_close = self._check_close()
        length = headers.get("content-length")
        self.length = None
        if length and not self.chunked and length.isdigit():
            self.length = int(length)
        if status in (http.client.NO_CONTENT, http.client.NOT_MODIFIED) or 100 <= status < 200 \
                or self._method == "HEAD":
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True


class _Connection(http.client.HTTPConnection):
    response_class = _Response


class _TlsConnection(http.client.HTTPSConnection):
    response_class = _Response


class _Peer:
    """Where one participant listens: scheme, host, port and path prefix of its base URL."""

    def __init__(self, base: str) -> None:
        u = urlsplit(base)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"participant URL must be http(s)://host[:port]; got {base!r}")
        self.https = u.scheme == "https"
        self.host = u.hostname
        self.port = u.port or (443 if self.https else 80)
        self.prefix = u.path.rstrip("/")

    def connect(self, timeout: float) -> http.client.HTTPConnection:
        cls = _TlsConnection if self.https else _Connection
        return cls(self.host, self.port, timeout=timeout)


class HttpParticipants:
    """Sends one saga action to its participant and classifies the answer."""

    def __init__(self, urls: Mapping[str, str], *, timeout: float = 1.0,
                 client: httpx.Client | None = None) -> None:
        missing = [p for p in PARTICIPANTS if p not in urls]
        if missing:
            raise ValueError(f"no URL for participant(s) {', '.join(missing)}")
        self.urls = {k: v.rstrip("/") for k, v in urls.items()}
        self.timeout = timeout
        self._httpx = client
        self._peers = {k: _Peer(v) for k, v in self.urls.items()}
        self._local = threading.local()
        #: Every thread's connections (service -> connection), to close them all.
        self._threads: list[dict[str, http.client.HTTPConnection]] = []
        self._lock = threading.Lock()

    def call(self, action: str, kind: s.Kind, saga: s.SagaState) -> s.Outcome:
        req = s.request_for(action, saga)
        try:
            if self._httpx is not None:
                status, body = self._send_httpx(req)
            else:
                status, body = self._send(req)
        except (TimeoutError, httpx.TimeoutException) as exc:
            return s.Transient(f"timeout after {self.timeout}s ({type(exc).__name__}) "
                               f"calling {req.service}")
        except (OSError, http.client.HTTPException, httpx.TransportError) as exc:
            return s.Transient(f"{type(exc).__name__} calling {req.service}: {exc}"[:300])
        try:
            parsed = json.loads(body) if body else {}
        except ValueError:
            parsed = {"detail": body[:300].decode(errors="replace")}
        return s.classify(action, kind, status, parsed)

    def _send_httpx(self, req: s.Request) -> tuple[int, bytes]:
        assert self._httpx is not None
        r = self._httpx.request(req.method, self.urls[req.service] + req.path, json=req.body,
                                headers={"Idempotency-Key": req.idempotency_key},
                                timeout=self.timeout)
        return r.status_code, r.content

    def _send(self, req: s.Request) -> tuple[int, bytes]:
        peer = self._peers[req.service]
        conns: dict[str, http.client.HTTPConnection] | None = getattr(self._local, "c", None)
        if conns is None:
            conns = self._local.c = {}
            with self._lock:
                self._threads.append(conns)
        body = None if req.body is None else json.dumps(req.body).encode()
        headers = {**JSON_HEADERS, "Idempotency-Key": req.idempotency_key}
        for fresh in (False, True):
            conn = conns.get(req.service)
            reused = conn is not None and not fresh
            if conn is None or fresh:
                if conn is not None:
                    conn.close()
                conn = conns[req.service] = peer.connect(self.timeout)
            try:
                conn.request(req.method, peer.prefix + req.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except (ConnectionError, http.client.BadStatusLine) as exc:
                conn.close()
                conns.pop(req.service, None)
                # A kept-alive connection the server had already closed: nothing was handled,
                # send it again at once on a new one (the idempotency key makes it safe anyway).
                if reused and isinstance(exc, ConnectionResetError | BrokenPipeError
                                         | http.client.RemoteDisconnected):
                    continue
                raise
            except (OSError, http.client.HTTPException):
                conn.close()
                conns.pop(req.service, None)
                raise
            if resp.will_close:
                conn.close()
                conns.pop(req.service, None)
            return resp.status, data
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            for conns in self._threads:
                for c in list(conns.values()):
                    c.close()
                conns.clear()
