"""A real Asterisk configured as the shipped per-call deployment: the image's own configuration, loaded.

* ``websocket_client.conf``: ``asterisk-docker/etc/websocket_client.conf`` rendered as the entrypoint
  renders it, with the test's ``uri`` (HAProxy's port, or one instance's) instead of ``haproxy:8765``;
* ``ari.conf``: the ``type = outbound_websocket`` section of ``asterisk-docker/etc/ari.conf`` (its
  ``local_ari_user`` is the kit's read-write user); tests/deploy checks that the ``.example`` files for
  other Asterisks say the same;
* the dialplan: the project's ``dialplan/extensions.conf`` as it is (``[ivr-lines]`` hand calls to
  ``Stasis(ivr)``, ``[ivr-unavailable]`` retries a failed ``Stasis()``), included by the kit's dialplan,
  so the kit's phone-like ``caller`` contexts stay available.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.asterisk.project_config import project_dialplan
from tests.real_asterisk import RealAsterisk

ROOT = Path(__file__).resolve().parents[2]
APP = "ivr"
"""The Stasis application of the project's dialplan (and of the outbound example)."""
PERCALL_USER = "asterisk"


def template(path: str, replacements: dict[str, str]) -> str:
    """A shipped file with ``replacements`` (regex -> text), each matching exactly once."""
    text = (ROOT / path).read_text(encoding="utf-8")
    for old, new in replacements.items():
        assert len(re.findall(old, text, flags=re.M)) == 1, f"{path}: expected one {old!r}"
        text = re.sub(old, new, text, flags=re.M)
    return text


def configure_percall(asterisk: RealAsterisk, *, port: int, password: str) -> None:
    """Point the shipped per-call connection at ``127.0.0.1:port`` and load the project's dialplan."""
    etc = asterisk.config_dir()
    clients = template(
        "asterisk-docker/etc/websocket_client.conf",
        {r"^uri = .*$": f"uri = ws://127.0.0.1:{port}/ari", r"\$\{PERCALL_PASSWORD\}": password},
    )
    ari = (ROOT / "asterisk-docker/etc/ari.conf").read_text(encoding="utf-8")
    outbound = ari[ari.index("[ivr-percall-app]") :]
    assert outbound.count("[") == 1, "asterisk-docker/etc/ari.conf: the outbound section must come last"
    outbound, found = re.subn(r"(?m)^local_ari_user = ivr\b", f"local_ari_user = {PERCALL_USER}", outbound)
    assert found == 1, "asterisk-docker/etc/ari.conf: expected one local_ari_user = ivr"
    with (etc / "websocket_client.conf").open("a", encoding="utf-8") as f:
        f.write("\n" + clients)
    with (etc / "ari.conf").open("a", encoding="utf-8") as f:
        f.write("\n" + outbound)
    asterisk.cli("module reload res_websocket_client.so")
    asterisk.cli("module reload res_ari.so")
    asterisk.set_custom_dialplan(project_dialplan("127.0.0.1:9"))
    listed = asterisk.cli("ari show outbound-websockets")
    assert re.search(r"^ivr-percall-app\s+per_call_config\s+\S+\s+valid", listed, flags=re.M), listed
