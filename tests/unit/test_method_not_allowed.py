"""A method a path does not take: a 405 in the services' error shape that lists every method
the path takes (Starlette's own `Allow` named only the first route it met)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from fastapi.testclient import TestClient

from ecommerce.config import Settings
from ecommerce.services.order import create_app
from ecommerce.store.sqlite_events import SqliteEventStore


def test_a_405_names_every_method_the_path_takes(tmp_path: Path) -> None:
    settings = replace(Settings.from_env(), mode="local", data_dir=tmp_path)
    with SqliteEventStore(tmp_path / "events.db") as store, \
            TestClient(create_app(settings, store)) as client:
        for method, path, allowed in (("HEAD", "/api/orders", ["GET", "POST"]),
                                      ("DELETE", "/api/orders", ["GET", "POST"]),
                                      ("PUT", "/api/orders/o-1", ["GET"]),
                                      ("GET", "/api/orders/o-1/confirm", ["POST"])):
            r = client.request(method, path)
            assert r.status_code == 405, (method, path)
            assert r.headers["allow"] == ", ".join(allowed)
            if method != "HEAD":  # a HEAD answer has no body
                assert r.json() == {
                    "detail": f"{method} is not served at {path}: send {' or '.join(allowed)}",
                    "reason": "method_not_allowed", "allowed": allowed}
