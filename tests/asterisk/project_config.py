"""The project's own Asterisk configuration (``dialplan/``, ``asterisk-docker/etc/``) loaded into a real one.

What applies to the test kit's Asterisk 22.10.1 (no SIP, relocatable directories, its own HTTP port):

* ``dialplan/extensions.conf`` as it is, included by the kit's dialplan (so the kit's ``caller`` phones
  stay available). One substitution: the compose host of the dialplan-only service (``ivr-dialplan:9092``)
  becomes the test's own ``ivr run --no-ari`` address.
* ``modules.conf`` (``autoload=no``, every module by name) without its "SIP for the test softphones" part:
  Asterisk refuses to start if a ``require =>`` module is missing, so a wrong module name fails here.
* ``ari.conf`` rendered the way ``entrypoint.sh`` renders it (the ``${ARI_PASSWORD}`` placeholder), plus
  the kit's own user for the test's probe.
* ``http.conf`` and ``musiconhold.conf`` with this instance's address and port (``bindaddr=0.0.0.0`` of
  the container becomes 127.0.0.1).

Not applied: ``asterisk.conf`` (the container's built-in directories; the kit's relocatable ones stay),
``logger.conf`` (console only; the kit's ``full.log`` is what tests read), ``pjsip.conf`` and ``rtp.conf``
(no SIP in this build).
"""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from base64 import b64encode
from pathlib import Path

from tests.real_asterisk import AsteriskStartError, RealAsterisk

ROOT = Path(__file__).parents[2]
DIALPLAN = ROOT / "dialplan" / "extensions.conf"
ETC = ROOT / "asterisk-docker" / "etc"
ARI_USER = "ivr"
ARI_PASSWORD = "test-ari-password-0123"
SIP_SECTION = "; ---- SIP for the test softphones ----"


def project_dialplan(dialplan_socket: str) -> str:
    text = DIALPLAN.read_text(encoding="utf-8")
    assert "ivr-dialplan:9092" in text
    return text.replace("ivr-dialplan:9092", dialplan_socket)


def project_modules() -> str:
    text = (ETC / "modules.conf").read_text(encoding="utf-8")
    head, sep, _sip = text.partition(SIP_SECTION)
    assert sep, f"modules.conf: no '{SIP_SECTION}' part"
    return head


def project_ari(kit_ari: str) -> str:
    text = (ETC / "ari.conf").read_text(encoding="utf-8").replace("${ARI_PASSWORD}", ARI_PASSWORD)
    assert "${" not in text
    users = re.split(r"(?m)^\[", kit_ari)
    kit_user = next("[" + part for part in users if part.startswith("asterisk]"))
    return text + "\n" + kit_user


def project_http(port: int) -> str:
    text = (ETC / "http.conf").read_text(encoding="utf-8")
    text = re.sub(r"(?m)^bindaddr=.*$", "bindaddr=127.0.0.1", text)
    text = re.sub(r"(?m)^bindport=.*$", f"bindport={port}", text)
    return text


def load_project_config(asterisk: RealAsterisk, *, dialplan_socket: str) -> None:
    """Write the project's configuration into ``asterisk`` and restart it with it."""
    etc = asterisk.config_dir()
    (etc / "extensions_custom.conf").write_text(project_dialplan(dialplan_socket), encoding="utf-8")
    (etc / "modules.conf").write_text(project_modules(), encoding="utf-8")
    (etc / "ari.conf").write_text(
        project_ari((etc / "ari.conf").read_text(encoding="utf-8")), encoding="utf-8"
    )
    (etc / "http.conf").write_text(project_http(asterisk.port), encoding="utf-8")
    (etc / "musiconhold.conf").write_text((ETC / "musiconhold.conf").read_text(encoding="utf-8"))
    offset = asterisk.log_offset()
    asterisk.cli("core restart now")
    wait_for_ari(asterisk, offset)


def wait_for_ari(asterisk: RealAsterisk, log_offset: int, timeout: float = 30.0) -> None:
    token = b64encode(f"{asterisk.user}:{asterisk.password}".encode()).decode()
    request = urllib.request.Request(
        f"{asterisk.ari_url}/asterisk/info", headers={"Authorization": f"Basic {token}"}
    )
    deadline = time.monotonic() + timeout
    time.sleep(0.5)  # the old process is still answering for a moment
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(request, timeout=2) as reply:
                if reply.status == 200 and "Asterisk Ready" in asterisk.log_since(log_offset):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    tail = asterisk.log_since(log_offset)[-3000:]
    proc = subprocess.run(["pgrep", "-f", str(asterisk.prefix)], capture_output=True, text=True)
    raise AsteriskStartError(
        f"Asterisk did not come back with the project's configuration: {tail} {proc.stdout}"
    )
