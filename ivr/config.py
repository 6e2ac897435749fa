"""Settings for ``ivr run`` and friends: flags over environment over ``ivr.toml`` over defaults.

Every setting has one ``IVR_...`` environment name and one key in ``ivr.toml`` (the field name). Secrets
are :class:`pydantic.SecretStr`, so they never show in logs, reprs or error messages. The OpenAI key is
not a setting here: the OpenAI SDK reads ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` itself.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ivr.webhook_policy import WebhookPolicy

ENV_PREFIX = "IVR_"


class ConfigError(ValueError):
    """A setting is wrong; the message is one line an operator can act on."""


def parse_hostport(
    value: str, *, default_port: int | None = None, allow_zero: bool = False
) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) into its parts, with a clear error."""
    text = value.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, port_text = text, ""
    if not port_text:
        if default_port is None:
            raise ConfigError(f"{value!r}: expected host:port")
        return host, default_port
    low = 0 if allow_zero else 1
    if not host or not port_text.isdigit() or not low <= int(port_text) < 65536:
        raise ConfigError(f"{value!r}: expected host:port with a port in {low}..65535")
    return host, int(port_text)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ari_url: str = Field("http://127.0.0.1:8088", description="Asterisk HTTP base URL, without /ari")
    ari_user: str = Field("ivr", description="ARI user (ari.conf)")
    ari_password: SecretStr = Field(SecretStr(""), description="ARI password (ari.conf)")
    ari_connections: int = Field(
        32,
        ge=1,
        description="REST connections to Asterisk this instance keeps at most, shared among its processes "
        "(Asterisk's http.conf sessionlimit is 100: a pool that takes them all locks everyone else out)",
    )
    ari_app: str = Field("ivr", description="Stasis application name")
    ari_mode: Literal["persistent", "per_call"] = Field(
        "persistent",
        description="persistent: ivr opens /ari/events; per_call: Asterisk (22.5+) opens a WebSocket per call",
    )
    ari_percall_listen: str = Field(
        "127.0.0.1:8765",
        description="where the per-call ARI WebSocket server listens (IVR_ARI_PERCALL_LISTEN)",
    )
    ari_percall_path: str = Field(
        "/ari", description="URL path of the per-call ARI server (its uri in Asterisk)"
    )
    ari_percall_user: str = Field("asterisk", description="user Asterisk's websocket_client.conf sends")
    ari_percall_password: SecretStr = Field(
        SecretStr(""),
        validate_default=True,
        description="password Asterisk's websocket_client.conf sends (required in per_call mode)",
    )
    audiosocket_listen: str = Field("127.0.0.1:9092", description="where the AudioSocket server listens")
    audiosocket_advertise: str | None = Field(
        None, description="host:port Asterisk dials for media (default: the listen address)"
    )
    # -- call media transport (WebSocket media: README "Choosing the media transport") --
    media: Literal["audiosocket", "websocket"] = Field(
        "audiosocket",
        description="each call's media: audiosocket, or websocket (chan_websocket, Asterisk 22.8+); a call's "
        "media= Stasis argument or IVR_MEDIA channel variable picks the other",
    )
    media_websocket_listen: str = Field(
        "127.0.0.1:8766",
        description="dialplan-only mode: where the WebSocket media server that Dial(WebSocket/<entry>/...) "
        "reaches listens (IVR_MEDIA_WEBSOCKET_LISTEN)",
    )
    media_websocket_path: str = Field(
        "/media", description="its URL path (the path of the websocket_client.conf entry's uri)"
    )
    media_websocket_user: str = Field(
        "ivr-media", description="user the websocket_client.conf entry sends (username)"
    )
    media_websocket_password: SecretStr = Field(
        SecretStr(""),
        description="password the websocket_client.conf entry sends; set, the dialplan-only server starts",
    )
    flows: Path = Field(Path("flows"), description="a flow file or a directory of flows")
    default_flow: str | None = Field(None, description="flow used when the call names none")
    format: Literal["slin16", "slin"] | None = Field(
        None, description="force the media format; default: slin16 for wideband callers, slin for G.711"
    )
    stt: str = Field("offline", description="speech-to-text engine name")
    tts: str = Field("offline", description="text-to-speech engine name")
    max_calls: int = Field(100, ge=1, description="concurrent calls; more get a busy message")
    setup_concurrency: int = Field(
        32,
        ge=1,
        description="ARI calls one process (worker) sets up at once; a burst over it waits, ringing, in order",
    )
    setup_queue_seconds: float = Field(
        10.0,
        gt=0,
        description="longest an ARI caller waits for a set-up slot; then it is refused (congestion)",
    )
    audiosocket_max_connections: int = Field(
        1000, ge=1, description="AudioSocket connections at once, from everyone (calls and not-yet-calls)"
    )
    pacer: Literal["auto", "native", "loop"] = Field(
        "auto",
        description="who paces AudioSocket frames: native (a C thread, off the event loop), loop (the event "
        "loop's frame clock), auto (native where it is built)",
    )
    pacer_realtime: int = Field(
        0,
        ge=0,
        le=99,
        description="SCHED_FIFO priority for the native pacing thread where allowed (0: normal)",
    )
    audiosocket_max_per_source: int | None = Field(
        None,
        ge=0,
        description="AudioSocket connections from one address at once (default: IVR_MAX_CALLS + 10; 0: no limit)",
    )
    webhook_allow: str | None = Field(
        None,
        description="comma-separated hosts (.example.com: any subdomain) and networks (10.0.0.0/8) webhooks "
        "may reach; unset: any public address",
    )
    webhook_allow_private: bool = Field(
        False, description="let webhooks reach private addresses (10/8, 172.16/12, 192.168/16, fc00::/7, ...)"
    )
    max_call_seconds: float = Field(3600.0, gt=0, description="hard limit on one call's length")
    workers: int | None = Field(
        None,
        ge=0,
        description="call worker processes (ivr run --workers); unset: one per core; 0: everything in one process",
    )
    speech_workers: int = Field(
        1,
        ge=0,
        description="offline speech processes per call worker (whisper, piper); 0: in the serving process",
    )
    shutdown_grace_seconds: float = Field(
        30.0, ge=0, description="on SIGTERM, how long live calls may finish before they are ended"
    )
    shutdown_goodbye: str | None = Field(
        None, description="said to calls still running when the grace period ends (none: just hang up)"
    )
    records_path: Path = Field(
        Path.home() / ".local" / "share" / "ivr" / "calls.sqlite3",
        description="SQLite file of call records (IVR_RECORDS_PATH)",
    )
    records_url: SecretStr | None = Field(
        None,
        description="PostgreSQL URL for call records shared by instances (IVR_RECORDS_URL); unset: records_path",
    )
    records_spool: Path | None = Field(
        None,
        description="where records wait while PostgreSQL is down (IVR_RECORDS_SPOOL); default: beside records_path",
    )
    instance_id: str | None = Field(
        None, description="this instance's name in call records (IVR_INSTANCE_ID); default: host-pid"
    )
    metrics_listen: str | None = Field(
        "127.0.0.1:9464",
        description="host:port of /metrics, /healthz, /readyz (IVR_METRICS_LISTEN); empty: off",
    )
    flows_watch: bool = Field(
        True, description="reload changed flow files while running (IVR_FLOWS_WATCH); SIGHUP reloads too"
    )
    recordings_dir: Path | None = Field(
        Path.home() / ".local" / "share" / "ivr" / "recordings",
        description="where record steps store their WAV files (IVR_RECORDINGS_DIR); empty: record steps fail",
    )
    prompt_cache: Path | None = Field(
        Path.home() / ".cache" / "ivr" / "prompts",
        description="directory of synthesised prompts (IVR_PROMPT_CACHE); empty disables the cache",
    )

    @field_validator("webhook_allow")
    @classmethod
    def _check_webhook_allow(cls, value: str | None) -> str | None:
        WebhookPolicy.parse(value)  # a bad entry is a ValueError naming it
        return value

    @model_validator(mode="after")
    def _check_caps(self) -> Settings:
        if self.audiosocket_max_connections < self.max_calls:
            raise ValueError(
                f"IVR_AUDIOSOCKET_MAX_CONNECTIONS ({self.audiosocket_max_connections}) is below "
                f"IVR_MAX_CALLS ({self.max_calls}): calls would be refused"
            )
        return self

    @field_validator("ari_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http(s) URL such as http://127.0.0.1:8088")
        if parts.path.rstrip("/").endswith("/ari"):
            raise ValueError("give the base URL without /ari (it is added for you)")
        if parts.username or parts.password:
            raise ValueError("put credentials in IVR_ARI_USER / IVR_ARI_PASSWORD, not in the URL")
        return value.rstrip("/")

    @field_validator("records_url")
    @classmethod
    def _check_records_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and urlsplit(value.get_secret_value().strip()).scheme.lower() not in (
            "postgresql",
            "postgres",
        ):
            raise ValueError(
                "expected postgresql://user@host:port/database (for SQLite set IVR_RECORDS_PATH)"
            )
        return value

    @field_validator("audiosocket_listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        parse_hostport(value, allow_zero=True)  # port 0: any free port (tests, simulations)
        return value

    @field_validator("ari_percall_listen")
    @classmethod
    def _check_percall_listen(cls, value: str) -> str:
        parse_hostport(value, allow_zero=True)
        return value

    @field_validator("ari_percall_path")
    @classmethod
    def _check_percall_path(cls, value: str) -> str:
        if not value.startswith("/") or "?" in value or "#" in value:
            raise ValueError("expected a URL path such as /ari")
        return value

    @field_validator("ari_percall_password")
    @classmethod
    def _check_percall_password(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        if info.data.get("ari_mode") == "per_call" and not value.get_secret_value():
            raise ValueError("per_call mode needs the password Asterisk sends (websocket_client.conf)")
        return value

    @field_validator("media_websocket_listen")
    @classmethod
    def _check_media_listen(cls, value: str) -> str:
        parse_hostport(value, allow_zero=True)
        return value

    @field_validator("media_websocket_path")
    @classmethod
    def _check_media_path(cls, value: str) -> str:
        if not value.startswith("/") or "?" in value or "#" in value:
            raise ValueError("expected a URL path such as /media")
        return value

    @field_validator("metrics_listen")
    @classmethod
    def _check_metrics(cls, value: str | None) -> str | None:
        if value is not None:
            parse_hostport(value, allow_zero=True)
        return value

    @field_validator("audiosocket_advertise")
    @classmethod
    def _check_advertise(cls, value: str | None) -> str | None:
        if value is not None:
            parse_hostport(value)
        return value

    @property
    def listen(self) -> tuple[str, int]:
        return parse_hostport(self.audiosocket_listen, allow_zero=True)

    @property
    def per_source_limit(self) -> int:
        """AudioSocket connections one address may hold (0: no limit): one PBX carries every call, so
        the default leaves it room for all of them plus a few being refused or closing, while a
        stranger who connects and never sends a UUID cannot fill the server's other slots."""
        if self.audiosocket_max_per_source is None:
            return self.max_calls + 10
        return self.audiosocket_max_per_source

    @property
    def advertise(self) -> str:
        return self.audiosocket_advertise or self.audiosocket_listen

    @property
    def media_websocket(self) -> tuple[str, int]:
        return parse_hostport(self.media_websocket_listen, allow_zero=True)

    @property
    def percall_listen(self) -> tuple[str, int]:
        return parse_hostport(self.ari_percall_listen, allow_zero=True)


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    toml_path: Path | None = None,
) -> Settings:
    """Merge defaults, ``ivr.toml`` (if present), environment and explicit overrides (flags)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = toml_path if toml_path is not None else Path(environ.get("IVR_CONFIG", "ivr.toml"))
    if path.is_file():
        try:
            values.update(tomllib.loads(path.read_text(encoding="utf-8")))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    elif toml_path is not None:
        raise ConfigError(f"{path}: no such file")
    for name, info in Settings.model_fields.items():
        raw = environ.get(env_name(name))
        if raw is None:
            continue
        if raw != "":
            values[name] = raw
        elif not info.is_required() and info.default is not None and _optional(info.annotation):
            values[name] = None  # an empty variable switches an optional feature off
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return Settings(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        if not err["loc"]:  # a rule across settings: its message names them
            raise ConfigError(f"settings: {str(err['msg']).removeprefix('Value error, ')}") from None
        field = str(err["loc"][0]) if err["loc"] else "?"
        hint = f"{field} ({env_name(field)})" if field in Settings.model_fields else field
        message = str(err["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"setting {hint}: {message}") from None


def _optional(annotation: Any) -> bool:
    return type(None) in getattr(annotation, "__args__", ())
