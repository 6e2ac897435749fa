"""What the supervisor and its call workers say to each other (over :mod:`ivr.ipc` channels).

==============  ========================================  ==================================================
direction       message                                   meaning
==============  ========================================  ==================================================
to worker       ``("config", WorkerConfig)``              first message: settings (secrets included, never on
                                                          the command line), worker index, mode
to worker       ``("event", raw_json)``                   an ARI event of a call this worker owns (ARI mode)
to worker       ``("ari", connected, reconnected)``       the supervisor's events socket went up or down
to worker       ``("metrics", request_id)``               asks for this worker's Prometheus exposition
to worker       ``("drain", grace_s, goodbye)``           SIGTERM: take no new calls, finish, then exit 0
to worker       ``("stop",)``                             exit now (live calls are hung up)
to supervisor   ``("ready", info)``                       serving; ``info``: pid, AudioSocket address
to supervisor   ``("call", call_id)``                     a call started on this worker
to supervisor   ``("released", call_id)``                 that call ended and its record is written
to supervisor   ``("metrics", request_id, text)``         the exposition asked for
==============  ========================================  ==================================================

A worker that dies is noticed by the supervisor as EOF plus an exit code; the calls it had announced and not
released get a record from the supervisor (``outcome: error``), and their Asterisk channels are hung up.
A worker notices its supervisor's death as EOF and stops its calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ivr.config import Settings

Mode = Literal["ari", "dialplan"]


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    settings: Settings
    index: int
    workers: int
    mode: Mode
    log_level: str = "INFO"
    log_json: bool = False
    metrics_instance: str | None = None
    """``IVR_INSTANCE_ID`` as configured (None when the supervisor made one up): the instance label of the
    worker's metrics."""
