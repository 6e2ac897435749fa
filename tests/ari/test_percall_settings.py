"""Settings of the per-call ARI mode: IVR_ARI_MODE and the per-call server's address and credentials."""

from __future__ import annotations

import pytest

from ivr.config import ConfigError, load_settings


def test_persistent_is_the_default_and_needs_no_per_call_password() -> None:
    settings = load_settings(environ={})
    assert settings.ari_mode == "persistent"
    assert settings.percall_listen == ("127.0.0.1", 8765)
    assert settings.ari_percall_path == "/ari"


def test_per_call_mode_needs_the_password_asterisk_sends() -> None:
    with pytest.raises(
        ConfigError, match=r"ari_percall_password \(IVR_ARI_PERCALL_PASSWORD\): per_call mode"
    ):
        load_settings(environ={"IVR_ARI_MODE": "per_call"})
    settings = load_settings(
        environ={
            "IVR_ARI_MODE": "per_call",
            "IVR_ARI_PERCALL_PASSWORD": "pw-from-websocket-client-conf",
            "IVR_ARI_PERCALL_LISTEN": "0.0.0.0:0",
            "IVR_ARI_PERCALL_PATH": "/ari/calls",
        }
    )
    assert settings.percall_listen == ("0.0.0.0", 0)
    assert settings.ari_percall_path == "/ari/calls"
    assert "pw-from-websocket-client-conf" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("IVR_ARI_MODE", "outbound", "ari_mode"),
        ("IVR_ARI_PERCALL_LISTEN", "nowhere", "ari_percall_listen"),
        ("IVR_ARI_PERCALL_LISTEN", "127.0.0.1:70000", "ari_percall_listen"),
        ("IVR_ARI_PERCALL_PATH", "ari", "ari_percall_path"),
        ("IVR_ARI_PERCALL_PATH", "/ari?x=1", "ari_percall_path"),
    ],
)
def test_bad_values_name_the_setting(name: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        load_settings(environ={name: value})
