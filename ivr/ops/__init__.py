"""Operations: call records (SQLite or PostgreSQL), Prometheus metrics and the health/metrics side port.

Each module stands alone and is imported by its own name (this package imports nothing, so
``ivr calls`` works without prometheus-client and the records need no aiohttp):

* :mod:`ivr.ops.records`: one durable row per finished call (``ivr calls list/show/export``) and
  checkpoints of live calls;
* :mod:`ivr.ops.metrics`: counters, gauges and histograms on a private registry;
* :mod:`ivr.ops.health`: ``/metrics``, ``/healthz`` and ``/readyz`` on 127.0.0.1:9464 by default.
"""
