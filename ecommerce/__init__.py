"""The e-commerce system the lab deploys: what the container image runs.

Layers, inner to outer (each imports only the ones before it):

- `domain`: pure rules (events, users, orders, payments, stock, the saga decider); no I/O.
- `store`: the event store (SQLite, PostgreSQL) and the read store (SQLite, Redis).
- `projections`: event -> read-model writes; the projector, the event processor, replay.
- `saga`: the orchestrator that drives each order's saga over the participants' HTTP APIs.
- `services`: the FastAPI services (user, order, inventory, payment, command, query,
  event-store-api) and `registry`, the one list of every process the lab runs.

Nothing here imports `labkit`, the workbook helper that deploys and teaches this system.
"""

#: The one version: the package's (pyproject reads it) and the image tag's (`labkit:<version>`).
__version__ = "0.1.0"
