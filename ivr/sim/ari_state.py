"""State of the simulated Asterisk: channels, bridges, hangup causes, and their ARI JSON snapshots.

The JSON produced here has exactly the keys a real Asterisk 22.10.1 sends (see
``tests/ari/data/ari-events-asterisk-22.10.1.jsonl``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ivr.sim.media_leg import MediaLeg

# ast_cause2str() texts of the causes an IVR meets.
CAUSE_TEXT: dict[int, str] = {
    0: "Unknown",
    1: "Unallocated (unassigned) number",
    3: "No route to destination",
    16: "Normal Clearing",
    17: "User busy",
    18: "No user responding",
    19: "User alerting, no answer",
    21: "Call Rejected",
    26: "Answered elsewhere",
    27: "Destination out of order",
    28: "Invalid number format (addr incomplete)",
    31: "Normal, unspecified",
    34: "Circuit/channel congestion",
    38: "Network out of order",
    58: "Bearer capability not available",
    127: "Interworking, unspecified",
}

# DELETE /channels/{id}?reason=... (convert_reason_to_hangup_code in res/ari/resource_channels.c).
HANGUP_REASONS: dict[str, int] = {
    "normal": 16,
    "busy": 17,
    "congestion": 34,
    "no_answer": 19,
    "timeout": 18,
    "rejected": 21,
    "unallocated": 1,
    "normal_unspecified": 31,
    "number_incomplete": 28,
    "codec_mismatch": 58,
    "interworking": 127,
    "failure": 38,
    "answered_elsewhere": 26,
}


def cause_text(cause: int) -> str:
    return CAUSE_TEXT.get(cause, "Unknown")


def ari_now() -> str:
    """Timestamp in Asterisk's format: ``2026-11-23T21:50:22.239+0000``."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}+0000"


_CALLERID = re.compile(r'^\s*"?(?P<name>[^"<]*?)"?\s*<(?P<num>[^>]*)>\s*$')


def parse_callerid(text: str) -> tuple[str, str]:
    """``Alice <5551234>`` -> ("Alice", "5551234"); a bare number or name is the number."""
    match = _CALLERID.match(text)
    if match:
        return match.group("name").strip(), match.group("num").strip()
    return "", text.strip()


@dataclass(slots=True)
class SimChannel:
    """One simulated channel; ``to_json`` is its ARI ``Channel`` snapshot."""

    id: str
    name: str
    state: str
    kind: str  # "caller", "outbound" or "media"
    caller: tuple[str, str] = ("", "")
    connected: tuple[str, str] = ("", "")
    context: str = "default"
    exten: str = "s"
    priority: int = 1
    app_name: str = ""
    app_data: str = ""
    creationtime: str = field(default_factory=ari_now)
    language: str = "en"
    native_format: str = "slin16"
    variables: dict[str, str] = field(default_factory=dict)
    app: str | None = None
    """Application whose events this channel produces (set at creation for originate/externalMedia)."""
    in_stasis: bool = False
    args: list[str] = field(default_factory=list)
    bridge_id: str | None = None
    ringing: bool = False
    destroyed: bool = False
    hangup_cause: int | None = None
    continued_to: tuple[str, str, int] | None = None
    """(context, extension, priority) after ``continue``."""
    redirected_to: str | None = None
    dtmf_sent: list[str] = field(default_factory=list)
    """Digits the application played towards this channel's phone (``POST /channels/{id}/dtmf``)."""
    dtmf_pressed: list[str] = field(default_factory=list)
    dialstring: str = ""
    media_uuid: str | None = None
    media_host: str | None = None
    media_format: str | None = None
    media_leg: MediaLeg | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "protocol_id": "",
            "caller": {"name": self.caller[0], "number": self.caller[1]},
            "connected": {"name": self.connected[0], "number": self.connected[1]},
            "accountcode": "",
            "dialplan": {
                "context": self.context,
                "exten": self.exten,
                "priority": self.priority,
                "app_name": self.app_name,
                "app_data": self.app_data,
            },
            "creationtime": self.creationtime,
            "language": self.language,
        }

    @property
    def tech(self) -> str:
        return self.name.split("/", 1)[0]


@dataclass(slots=True)
class SimBridge:
    id: str
    bridge_type: str = "mixing"
    name: str = ""
    channels: list[str] = field(default_factory=list)
    creationtime: str = field(default_factory=ari_now)
    apps: set[str] = field(default_factory=set)
    """Applications subscribed to the bridge (those of the channels that entered it)."""

    @property
    def technology(self) -> str:
        if self.bridge_type == "holding":
            return "holding_bridge"
        # A mixing bridge runs simple_bridge with up to two channels and softmix beyond.
        return "simple_bridge" if len(self.channels) <= 2 else "softmix"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "technology": self.technology,
            "bridge_type": self.bridge_type,
            "bridge_class": "stasis",
            "creator": "Stasis",
            "name": self.name,
            "channels": list(self.channels),
            "creationtime": self.creationtime,
            "video_mode": "talker",
        }
