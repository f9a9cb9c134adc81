"""Redis with a password, as the cluster runs it: the URL from the redis-credentials Secret
authenticates a real RedisReadStore, and a missing or wrong password is one clear sentence that
never prints the password. The test starts its own redis-server with --requirepass (the shared
one on 6379 has none) and skips when redis-server is not installed."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml

from ecommerce.config import REPO_DIR, redact_url
from ecommerce.domain.readmodel import Put, WriteBuffer
from ecommerce.store.base import StoreUnavailableError
from ecommerce.store.redis_read import RedisReadStore
from tests.waiting import wait_until


def secret() -> dict[str, str]:
    docs = yaml.safe_load_all((REPO_DIR / "manifests/00-base/redis.yaml").read_text())
    doc = next(d for d in docs if d["kind"] == "Secret")
    return doc["stringData"]


@pytest.fixture(scope="module")
def protected_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    password = secret()["password"]
    workdir: Path = tmp_path_factory.mktemp("redis-auth")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--requirepass",
                             password, "--protected-mode", "yes", "--save", "", "--appendonly",
                             "no", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, password=password, socket_connect_timeout=1)

    def up() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    try:
        wait_until(up, timeout=30, what="the password-protected redis-server to answer")
        yield port, password
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


def test_the_secret_url_carries_the_password_redis_requires() -> None:
    data = secret()
    kwargs = redis.Redis.from_url(data["url"]).connection_pool.connection_kwargs
    assert kwargs["password"] == data["password"]
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("redis", 6379, 0)
    assert redact_url(data["url"]) == "redis://:***@redis:6379/0"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_the_url_with_the_password_authenticates(protected_redis: tuple[int, str]) -> None:
    port, password = protected_redis
    store = RedisReadStore(f"redis://:{password}@127.0.0.1:{port}/0", prefix="auth-test")
    try:
        store.ping()
        buf = WriteBuffer()
        buf.add(Put("users", "u1", {"id": "u1"}, 1))
        store.commit(buf, {"users": 1}, {"users": 0})
        assert store.get("users", "u1") == {"id": "u1"}
    finally:
        store.close()


@pytest.mark.parametrize("auth", ["", ":not-the-password@"])
def test_a_missing_or_wrong_password_is_one_sentence_without_the_password(
        protected_redis: tuple[int, str], auth: str) -> None:
    port, _ = protected_redis
    store = RedisReadStore(f"redis://{auth}127.0.0.1:{port}/0", prefix="auth-test")
    try:
        with pytest.raises(StoreUnavailableError) as err:
            store.ping()
    finally:
        store.close()
    message = str(err.value)
    assert "refused the connection's credentials" in message
    assert "redis-credentials Secret" in message
    assert "not-the-password" not in message
    assert "\n" not in message
