"""uvicorn, ticking once a second instead of ten times: an idle service then costs next to nothing.

uvicorn's main loop wakes every 0.1 s to refresh the `Date` header (once a second) and to see
whether it should exit. In a lab of eight idle HTTP processes that is 80 wake-ups a second,
about 1% of a core on the lab's machine (`labkit bench idle`). Ticking once a second does the
same work; the price is that SIGTERM is acted on within a second instead of 0.1 s.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

#: Seconds between two turns of the server's housekeeping loop.
TICK = 1.0

#: Seconds an idle keep-alive connection stays open. uvicorn's default (5 s) equals httpx's
#: `keepalive_expiry`, so a client could send on a pooled connection at the very moment the
#: server closed it: the request then fails with a reset (`ReadError`), seen once in CI. The
#: server must keep a connection longer than any client or proxy in front of it does (httpx:
#: 5 s; cloud load balancers and ingress controllers: 60 s idle).
KEEP_ALIVE = 75


def config(app: Any, **options: Any) -> Any:
    """The uvicorn.Config a service runs with: `options` plus the keep-alive above."""
    import uvicorn

    return uvicorn.Config(app, **{"timeout_keep_alive": KEEP_ALIVE, **options})


def run(app: Any, **options: Any) -> None:
    """`uvicorn.run(app, **options)` for one process without reload, with the slower tick."""
    import uvicorn

    class QuietServer(uvicorn.Server):
        async def main_loop(self) -> None:
            counter = 0
            should_exit = await self.on_tick(counter)
            while not should_exit:
                await asyncio.sleep(TICK)
                counter = (counter + 10) % 864000  # a multiple of 10: the Date header each tick
                should_exit = await self.on_tick(counter)

    server = QuietServer(config(app, **options))
    server.run()
    if not server.started:  # as uvicorn.run: the socket could not be bound, the app not loaded
        sys.exit(3)
