from __future__ import annotations

from pathlib import Path

import pytest

from ivr.config import ConfigError, load_settings, parse_hostport


def test_defaults_bind_loopback_and_name_the_app() -> None:
    s = load_settings(environ={}, toml_path=None)
    assert s.ari_url == "http://127.0.0.1:8088"
    assert s.ari_app == "ivr"
    assert s.listen == ("127.0.0.1", 9092)
    assert s.advertise == "127.0.0.1:9092"


def test_precedence_flags_over_env_over_toml(tmp_path: Path) -> None:
    toml = tmp_path / "ivr.toml"
    toml.write_text('ari_app = "from-toml"\nari_user = "toml-user"\nmax_calls = 7\n')
    env = {"IVR_ARI_APP": "from-env", "IVR_ARI_PASSWORD": "s3cret"}
    s = load_settings({"ari_app": "from-flag", "format": None}, environ=env, toml_path=toml)
    assert s.ari_app == "from-flag"
    assert s.ari_user == "toml-user"
    assert s.max_calls == 7
    assert s.ari_password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)
    assert "s3cret" not in str(s.model_dump())


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IVR_ARI_URL": "localhost:8088"}, "ari_url (IVR_ARI_URL)"),
        ({"IVR_ARI_URL": "http://127.0.0.1:8088/ari"}, "without /ari"),
        ({"IVR_ARI_URL": "http://u:p@127.0.0.1:8088"}, "IVR_ARI_PASSWORD"),
        ({"IVR_AUDIOSOCKET_LISTEN": "0.0.0.0"}, "host:port"),
        ({"IVR_FORMAT": "ulaw"}, "format (IVR_FORMAT)"),
        ({"IVR_MAX_CALLS": "0"}, "max_calls"),
    ],
)
def test_bad_settings_fail_with_one_clear_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=r"^setting .*") as info:
        load_settings(environ=env)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_explicit_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(environ={}, toml_path=tmp_path / "nope.toml")


def test_unknown_toml_key_is_rejected(tmp_path: Path) -> None:
    toml = tmp_path / "ivr.toml"
    toml.write_text('ari_passwd = "x"\n')
    with pytest.raises(ConfigError, match="ari_passwd"):
        load_settings(environ={}, toml_path=toml)


def test_parse_hostport() -> None:
    assert parse_hostport("10.0.0.5:9092") == ("10.0.0.5", 9092)
    assert parse_hostport("[::1]:9092") == ("::1", 9092)
    assert parse_hostport("asterisk", default_port=8088) == ("asterisk", 8088)
    with pytest.raises(ConfigError):
        parse_hostport("host:99999")
