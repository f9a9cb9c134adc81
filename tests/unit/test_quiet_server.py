"""The services' uvicorn settings that a client depends on."""

import httpx
from fastapi import FastAPI

from ecommerce import quiet_server


def test_server_keeps_idle_connections_longer_than_httpx_does() -> None:
    # Equal timeouts (uvicorn's and httpx's defaults are both 5 s) let a pooled connection be
    # reused at the moment the server closes it: the request fails with a reset (CI, once).
    config = quiet_server.config(FastAPI(), host="127.0.0.1", port=0)
    expiry = httpx.Client()._transport._pool._keepalive_expiry  # what a default client keeps
    assert expiry is not None
    assert config.timeout_keep_alive > expiry + 1
    # and longer than the 60 s idle timeout of the proxies a cluster puts in front of it
    assert config.timeout_keep_alive > 60


def test_a_caller_may_still_choose_its_own_keep_alive() -> None:
    assert quiet_server.config(FastAPI(), timeout_keep_alive=9).timeout_keep_alive == 9
