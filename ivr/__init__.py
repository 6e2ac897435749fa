"""ivr: real-time voice IVRs on Asterisk (ARI + AudioSocket) driven by YAML call flows."""

import os

__version__ = "0.1.0"

# onnxruntime (the VAD, end-of-turn and offline voice models) sends usage telemetry to Microsoft from
# 1.29 on Linux too: an uploader thread, DNS lookups of an outside host, a device id and an event database
# under ~/.cache/Microsoft. An IVR next to a PBX must not call out on its own. Read once, when onnxruntime
# starts, and inherited by every worker process; set ORT_DISABLE_TELEMETRY=0 beforehand to allow it.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
