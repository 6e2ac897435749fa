"""The Docker deployment, checked without Docker.

CI has no Docker engine, so these tests read docker-compose.yml, both Dockerfiles, .dockerignore,
.env.example, asterisk-docker/ (entrypoint and Asterisk .conf files), deploy/haproxy/haproxy.cfg and
dialplan/extensions.conf, and check that the names, ports, paths and variables they share agree with each
other and with the app (``ivr.config.Settings``, flows/*.yaml). Every failure names the file and the
mismatch. (tests/topology runs the same topology, this haproxy.cfg included, without Docker.)
"""

from __future__ import annotations

import fnmatch
import itertools
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from ivr.config import Settings, env_name, load_settings, parse_hostport

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
APP_DOCKERFILE = ROOT / "Dockerfile"
AST_DIR = ROOT / "asterisk-docker"
AST_DOCKERFILE = AST_DIR / "Dockerfile"
AST_ETC = AST_DIR / "etc"
ENTRYPOINT = AST_DIR / "entrypoint.sh"
DIALPLAN = ROOT / "dialplan" / "extensions.conf"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERIGNORE = ROOT / ".dockerignore"
FLOWS = ROOT / "flows"
HAPROXY_CFG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
WS_CLIENT = AST_ETC / "websocket_client.conf"
WS_CLIENT_EXAMPLE = AST_ETC / "websocket_client.conf.example"

SETTING_ENV_NAMES = frozenset(env_name(f) for f in Settings.model_fields)
ARI_MODE_REQUIRED = (
    "IVR_ARI_URL",
    "IVR_ARI_USER",
    "IVR_ARI_PASSWORD",
    "IVR_ARI_APP",
    "IVR_AUDIOSOCKET_LISTEN",
    "IVR_AUDIOSOCKET_ADVERTISE",
    "IVR_FLOWS",
)
PER_CALL_REQUIRED = (
    *ARI_MODE_REQUIRED,
    "IVR_ARI_MODE",
    "IVR_ARI_PERCALL_LISTEN",
    "IVR_ARI_PERCALL_USER",
    "IVR_ARI_PERCALL_PASSWORD",
    "IVR_METRICS_LISTEN",
    "IVR_INSTANCE_ID",
    "IVR_RECORDS_URL",
    "IVR_RECORDS_SPOOL",
)
DIALPLAN_MODE_REQUIRED = ("IVR_AUDIOSOCKET_LISTEN", "IVR_FLOWS", "IVR_DEFAULT_FLOW")

# What the project needs from Asterisk whatever the dialplan says: ARI + Stasis (control), AudioSocket
# (media), mixing/holding bridges, PJSIP + RTP for softphones, codecs and formats for prompts and phones.
REQUIRED_MODULES = frozenset(
    {
        "pbx_config",
        "app_stasis",
        "app_dial",
        "app_playback",
        "app_audiosocket",
        "chan_audiosocket",
        "res_audiosocket",
        "res_http_websocket",
        "res_stasis",
        "res_stasis_answer",
        "res_stasis_playback",
        "res_stasis_recording",
        "res_stasis_snoop",
        "res_ari",
        "res_ari_model",
        "res_ari_applications",
        "res_ari_asterisk",
        "res_ari_bridges",
        "res_ari_channels",
        "res_ari_events",
        "chan_pjsip",
        "res_pjproject",
        "res_pjsip",
        "res_pjsip_session",
        "res_pjsip_registrar",
        "res_pjsip_authenticator_digest",
        "res_pjsip_endpoint_identifier_user",
        "res_pjsip_sdp_rtp",
        "res_rtp_asterisk",
        "res_sorcery_config",
        "res_sorcery_memory",
        "res_sorcery_astdb",
        "bridge_simple",
        "bridge_softmix",
        "bridge_native_rtp",
        "bridge_holding",
        "codec_ulaw",
        "codec_alaw",
        "codec_g722",
        "codec_resample",
        "format_wav",
        "format_pcm",
        "format_gsm",
        "func_channel",
        "func_callerid",
        "res_musiconhold",
        "res_timing_timerfd",
    }
)

# Dialplan applications, functions and channel technologies -> the module that provides them (None: the
# core). An application missing here fails the test: add it with its module.
APP_MODULES: dict[str, str | None] = {
    "answer": None,
    "hangup": None,
    "noop": None,
    "goto": None,
    "gotoif": None,
    "set": None,
    "wait": None,
    "ringing": None,
    "stasis": "app_stasis",
    "dial": "app_dial",
    "playback": "app_playback",
    "audiosocket": "app_audiosocket",
    "echo": "app_echo",
    "senddtmf": "app_senddtmf",
    "playtones": "app_playtones",
    "stopplaytones": "app_playtones",
    "musiconhold": "res_musiconhold",
}
FUNCTION_MODULES: dict[str, str | None] = {
    "UUID": "func_uuid",
    "CALLERID": "func_callerid",
    "CONNECTEDLINE": "func_callerid",
    "CHANNEL": "func_channel",
}
TECH_MODULES: dict[str, str | None] = {
    "PJSIP": "chan_pjsip",
    "AudioSocket": "chan_audiosocket",
    "WebSocket": "chan_websocket",
    "Local": None,
}
SOUND_PACKAGES = re.compile(r"^(CORE|EXTRA)-SOUNDS-|^MOH-")
NOT_MODULES = frozenset({"BUILD_NATIVE"})


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# --------------------------------------------------------------------------------------- compose helpers


@cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{rel(COMPOSE)}: not a mapping"
    return data


def services() -> dict[str, dict[str, Any]]:
    found = compose().get("services")
    assert isinstance(found, dict), f"{rel(COMPOSE)}: no services mapping"
    assert found, f"{rel(COMPOSE)}: no services"
    return found


def environment(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.partition("=") for item in env)
        return {k: v for k, _, v in pairs}
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def command(svc: dict[str, Any]) -> list[str]:
    cmd = svc.get("command")
    if cmd is None:
        return dockerfile_cmd(build_dockerfile(svc))
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def build_dockerfile(svc: dict[str, Any]) -> Path:
    build = svc.get("build")
    assert build is not None, f"{rel(COMPOSE)}: service has no build section"
    if isinstance(build, str):
        return (ROOT / build / "Dockerfile").resolve()
    context = ROOT / str(build.get("context", "."))
    return (context / str(build.get("dockerfile", "Dockerfile"))).resolve()


def build_context(svc: dict[str, Any]) -> Path:
    build = svc["build"]
    return (ROOT / (build if isinstance(build, str) else str(build.get("context", ".")))).resolve()


def services_built_from(dockerfile: Path) -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in services().items()
        if svc.get("build") is not None and build_dockerfile(svc) == dockerfile.resolve()
    }


def app_services() -> dict[str, dict[str, Any]]:
    found = services_built_from(APP_DOCKERFILE)
    assert found, f"{rel(COMPOSE)}: no service is built from the root Dockerfile"
    return found


def ari_app_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in app_services().items() if "--no-ari" not in command(s)}


def percall_replicas() -> dict[str, dict[str, Any]]:
    """The ARI services in per-call mode: the replicas behind HAProxy."""
    return {
        n: s
        for n, s in ari_app_services().items()
        if resolved_environment(s).get("IVR_ARI_MODE") == "per_call"
    }


def dialplan_app_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in app_services().items() if "--no-ari" in command(s)}


def asterisk_service() -> tuple[str, dict[str, Any]]:
    found = services_built_from(AST_DOCKERFILE)
    assert len(found) == 1, (
        f"{rel(COMPOSE)}: expected one service built from {rel(AST_DOCKERFILE)}, got {sorted(found)}"
    )
    return next(iter(found.items()))


INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")


def compose_strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from compose_strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from compose_strings(item)
    elif isinstance(node, str):
        yield node


def compose_variables() -> set[str]:
    return {
        m["name"] for s in compose_strings(compose()) for m in INTERPOLATION.finditer(s.replace("$$", ""))
    }


def interpolate(value: str, env: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        name, op, arg = m["name"], m["op"] or "", m["arg"] or ""
        current = env.get(name)
        if op in (":-", "-"):
            return current if current or (op == "-" and current is not None) else arg
        if op in (":?", "?"):
            assert current or (op == "?" and current is not None), f"{rel(COMPOSE)}: {name} required: {arg}"
            return current or ""
        if op in (":+", "+"):
            return arg if current or (op == "+" and current is not None) else ""
        return current or ""

    return INTERPOLATION.sub(sub, value)


@cache
def env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{rel(ENV_EXAMPLE)}: '{line}' is not NAME=value"
            values[key.strip()] = value.strip()
    return values


def resolved_environment(svc: dict[str, Any], dotenv: dict[str, str] | None = None) -> dict[str, str]:
    """The service's environment as compose would pass it (default: with .env copied from .env.example)."""
    values = env_example() if dotenv is None else dotenv
    return {k: interpolate(v, values) for k, v in environment(svc).items()}


def dotenv_variants() -> list[tuple[str, dict[str, str]]]:
    """.env as copied from .env.example, and .env with only the required variables (compose's defaults)."""
    required = {
        m["name"]
        for s in compose_strings(compose())
        for m in INTERPOLATION.finditer(s)
        if "?" in (m["op"] or "")
    }
    minimal = {k: v for k, v in env_example().items() if k in required}
    return [("with .env from .env.example", env_example()), ("with compose's defaults", minimal)]


def published_ports(svc: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(host ip, host ports, container ports, protocol) of the short port syntax."""
    result: list[tuple[str, str, str, str]] = []
    for entry in svc.get("ports") or []:
        text = interpolate(str(entry), env_example())
        proto = "tcp"
        if "/" in text:
            text, proto = text.rsplit("/", 1)
        parts = text.rsplit(":", 2)
        if len(parts) == 3:
            result.append((parts[0], parts[1], parts[2], proto))
        elif len(parts) == 2:
            result.append(("0.0.0.0", parts[0], parts[1], proto))
        else:
            result.append(("", "", parts[0], proto))
    return result


def healthcheck_text(svc: dict[str, Any]) -> str:
    check = svc.get("healthcheck")
    assert isinstance(check, dict), "no healthcheck"
    assert check.get("test"), "healthcheck without a test"
    test = check["test"]
    return " ".join(str(t) for t in test) if isinstance(test, list) else str(test)


# ------------------------------------------------------------------------------------ Dockerfile helpers


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


@cache
def dockerfile(path: Path) -> tuple[Instruction, ...]:
    """Instructions with continuation lines joined and comments dropped."""
    result: list[Instruction] = []
    buffer, start = "", 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        buffer += stripped
        keyword, _, args = buffer.partition(" ")
        result.append(Instruction(keyword.upper(), args.strip(), start))
        buffer = ""
    return tuple(result)


def copies(path: Path) -> list[tuple[list[str], str, Instruction]]:
    """(sources, destination, instruction) of every COPY/ADD from the build context."""
    found: list[tuple[list[str], str, Instruction]] = []
    for ins in dockerfile(path):
        if ins.keyword not in ("COPY", "ADD"):
            continue
        words = shlex.split(ins.args)
        if any(w.startswith("--from") for w in words):
            continue
        words = [w for w in words if not w.startswith("--")]
        found.append((words[:-1], words[-1], ins))
    return found


def exposed_ports(path: Path) -> set[str]:
    ports: set[str] = set()
    for ins in dockerfile(path):
        if ins.keyword == "EXPOSE":
            ports.update(p.split("/")[0] for p in ins.args.split())
    return ports


def dockerfile_cmd(path: Path) -> list[str]:
    cmds = [ins for ins in dockerfile(path) if ins.keyword == "CMD"]
    assert cmds, f"{rel(path)}: no CMD"
    args = cmds[-1].args
    return [str(a) for a in yaml.safe_load(args)] if args.startswith("[") else shlex.split(args)


def menuselect_enabled(path: Path) -> set[str]:
    text = " ".join(ins.args for ins in dockerfile(path) if ins.keyword == "RUN")
    return set(re.findall(r"--enable\s+([A-Za-z0-9_-]+)", text))


def dockerignore_patterns() -> list[tuple[bool, str]]:
    patterns = []
    for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            patterns.append((negated, line.lstrip("!").strip("/")))
    return patterns


def dockerignored(path: str) -> bool:
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negated, pattern in dockerignore_patterns():
        for prefix in prefixes:
            if fnmatch.fnmatchcase(prefix, pattern) or (
                pattern.startswith("**/") and fnmatch.fnmatchcase(prefix.split("/")[-1], pattern[3:])
            ):
                excluded = not negated
    return excluded


# ------------------------------------------------------------------------------- Asterisk .conf helpers


@dataclass
class Section:
    name: str
    line: int
    template: bool = False
    bases: list[str] = field(default_factory=list)
    items: list[tuple[str, str, int]] = field(default_factory=list)

    def get(self, key: str) -> str | None:
        values = [v for k, v, _ in self.items if k == key]
        return values[-1] if values else None


def strip_comment(line: str) -> str:
    out, escaped = [], False
    for ch in line:
        if ch == ";" and not escaped:
            break
        escaped = ch == "\\" and not escaped
        out.append(ch)
    return "".join(out).strip()


@cache
def conf(path: Path) -> tuple[Section, ...]:
    sections: list[Section] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = strip_comment(raw)
        if not line:
            continue
        header = re.fullmatch(r"\[([^\]]+)\](?:\(([^)]*)\))?", line)
        if header:
            opts = [o.strip() for o in (header[2] or "").split(",") if o.strip()]
            sections.append(
                Section(header[1], number, template="!" in opts, bases=[o for o in opts if o not in "!+"])
            )
            continue
        assert sections, f"{rel(path)}:{number}: '{line}' outside any [section]"
        key, sep, value = line.partition("=")
        assert sep, f"{rel(path)}:{number}: '{line}' is not key=value"
        sections[-1].items.append((key.strip(), value.lstrip(">").strip(), number))
    return tuple(sections)


def effective(path: Path, section: Section) -> dict[str, str]:
    """Options of a section including those of the templates it inherits from."""
    by_name = {s.name: s for s in conf(path) if s.template}
    values: dict[str, str] = {}
    for base in section.bases:
        assert base in by_name, f"{rel(path)}:{section.line}: [{section.name}] uses unknown template '{base}'"
        values.update(effective(path, by_name[base]))
    values.update({k: v for k, v, _ in section.items})
    return values


def conf_value(path: Path, section_name: str, key: str) -> str:
    for section in conf(path):
        if section.name == section_name and (value := section.get(key)) is not None:
            return value
    raise AssertionError(f"{rel(path)}: no {key}= in [{section_name}]")


def pjsip_objects(kind: str) -> dict[str, dict[str, str]]:
    path = AST_ETC / "pjsip.conf"
    found = {}
    for section in conf(path):
        if section.template:
            continue
        values = effective(path, section)
        if values.get("type") == kind:
            found[section.name] = values
    return found


# ---------------------------------------------------------------------------------- dialplan helpers


@dataclass(frozen=True)
class Step:
    context: str
    exten: str
    priority: str
    app: str
    args: str
    line: int

    def where(self) -> str:
        return f"{rel(DIALPLAN)}:{self.line} ([{self.context}] {self.exten})"


@dataclass
class Dialplan:
    contexts: dict[str, dict[str, list[Step]]] = field(default_factory=dict)
    includes: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    def steps(self) -> Iterator[Step]:
        for extens in self.contexts.values():
            for steps in extens.values():
                yield from steps


def split_args(text: str) -> list[str]:
    """Split at top-level commas (not inside (), ${} or $[])."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts]


@cache
def dialplan() -> Dialplan:
    plan = Dialplan()
    context, exten = "", ""
    for number, raw in enumerate(DIALPLAN.read_text(encoding="utf-8").splitlines(), 1):
        line = strip_comment(raw)
        if not line:
            continue
        header = re.fullmatch(r"\[([^\]]+)\]", line)
        if header:
            context = header[1]
            if context not in ("general", "globals"):
                plan.contexts.setdefault(context, {})
                plan.includes.setdefault(context, [])
            continue
        key, _, value = line.partition("=>")
        key, value = key.strip(), value.strip()
        if context in ("general", "globals") or not value:
            continue
        if key == "include":
            plan.includes[context].append((value, number))
            continue
        assert key in ("exten", "same"), f"{rel(DIALPLAN)}:{number}: unexpected '{key}'"
        if key == "exten":
            exten, priority, call = [*value.split(",", 2), "", ""][:3]
        else:
            assert exten, f"{rel(DIALPLAN)}:{number}: 'same' before any 'exten'"
            priority, _, call = value.partition(",")
        app, _, args = call.strip().partition("(")
        plan.contexts[context].setdefault(exten.strip(), []).append(
            Step(
                context, exten.strip(), priority.strip(), app.strip(), args.strip().removesuffix(")"), number
            )
        )
    return plan


def pattern_matches(pattern: str, exten: str) -> bool:
    if not pattern.startswith("_"):
        return pattern == exten
    regex = ""
    chars = iter(pattern[1:])
    for ch in chars:
        if ch == "X":
            regex += "[0-9]"
        elif ch == "Z":
            regex += "[1-9]"
        elif ch == "N":
            regex += "[2-9]"
        elif ch == ".":
            regex += ".+"
        elif ch == "!":
            regex += ".*"
        elif ch == "[":
            cls = ""
            for c in chars:
                if c == "]":
                    break
                cls += c
            regex += f"[{re.escape(cls).replace(chr(92) + '-', '-')}]"
        else:
            regex += re.escape(ch)
    return re.fullmatch(regex, exten) is not None


def extension_exists(context: str, exten: str, priority: int = 1) -> bool:
    extens = dialplan().contexts.get(context, {})
    for pattern, steps in extens.items():
        if pattern_matches(pattern, exten) and any(s.priority == str(priority) for s in steps):
            return True
    return any(extension_exists(inc, exten, priority) for inc, _ in dialplan().includes.get(context, []))


def dial_strings() -> Iterator[tuple[Step, str]]:
    for step in dialplan().steps():
        if step.app.lower() == "dial":
            target = split_args(step.args)[0]
            for one in target.split("&"):
                yield step, one


def audiosocket_targets() -> list[tuple[Step, str]]:
    """host:port of every AudioSocket() application and Dial(AudioSocket/...) in the dialplan."""
    found = []
    for step in dialplan().steps():
        if step.app.lower() == "audiosocket":
            args = split_args(step.args)
            assert len(args) >= 2, f"{step.where()}: AudioSocket(uuid,host:port) needs two arguments"
            found.append((step, args[1]))
    for step, dial in dial_strings():
        if dial.startswith("AudioSocket/"):
            found.append((step, dial.split("/")[1]))
    return found


def stasis_steps() -> list[tuple[Step, list[str]]]:
    return [(s, split_args(s.args)) for s in dialplan().steps() if s.app.lower() == "stasis"]


# ------------------------------------------------------------------------------------------ flow helpers


def flow_names() -> set[str]:
    return {p.stem for p in FLOWS.glob("*.yaml")}


def transfers(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "transfer" and isinstance(value, dict):
                yield value
            else:
                yield from transfers(value)
    elif isinstance(node, list):
        for item in node:
            yield from transfers(item)


def flow_transfers() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(FLOWS.glob("*.yaml")):
        for t in transfers(yaml.safe_load(path.read_text(encoding="utf-8"))):
            found.append((rel(path), t))
    return found


def entrypoint_text() -> str:
    return ENTRYPOINT.read_text(encoding="utf-8")


def rendered_variables(template: str) -> set[str]:
    """Variables the entrypoint substitutes into a template: `render NAME '${A} ${B}'`."""
    m = re.search(rf"^\s*render\s+{re.escape(template)}\s+'([^']*)'", entrypoint_text(), re.M)
    assert m, f"{rel(ENTRYPOINT)}: no `render {template} '...'` line"
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", m[1]))


def placeholders(path: Path) -> set[str]:
    text = "\n".join(strip_comment(line) for line in path.read_text(encoding="utf-8").splitlines())
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text))


def modules_conf() -> dict[str, list[str]]:
    path = AST_ETC / "modules.conf"
    result: dict[str, list[str]] = {}
    for section in conf(path):
        if section.name == "modules":
            for key, value, _ in section.items:
                result.setdefault(key, []).append(value)
    assert result, f"{rel(path)}: no [modules] section"
    return result


def loaded_modules() -> set[str]:
    mods = modules_conf()
    return {m.removesuffix(".so") for key in ("load", "require", "preload") for m in mods.get(key, [])}


# ================================================================================================= tests


def test_compose_has_asterisk_haproxy_two_replicas_and_postgres_on_one_network() -> None:
    ast_name, _ = asterisk_service()
    assert ast_name == "asterisk", (
        f"{rel(COMPOSE)}: the Asterisk service is '{ast_name}', docs say 'asterisk'"
    )
    replicas = percall_replicas()
    assert len(replicas) >= 2, (
        f"{rel(COMPOSE)}: the scale-out shape has two per-call replicas, got {sorted(replicas)}"
    )
    assert set(replicas) == set(ari_app_services()), (
        f"{rel(COMPOSE)}: every ARI service must be a per-call replica (a persistent one would take every "
        f"call: Stasis() prefers a registered app): {sorted(ari_app_services())}"
    )
    ids = [resolved_environment(s)["IVR_INSTANCE_ID"] for s in replicas.values()]
    assert len(set(ids)) == len(ids), f"{rel(COMPOSE)}: replicas share an IVR_INSTANCE_ID: {ids}"
    assert str(services().get("haproxy", {}).get("image", "")).startswith("haproxy:"), (
        f"{rel(COMPOSE)}: no service 'haproxy' from the haproxy image"
    )
    assert str(services().get("postgres", {}).get("image", "")).startswith("postgres:"), (
        f"{rel(COMPOSE)}: no service 'postgres' from the postgres image"
    )
    nets = {name: tuple(svc.get("networks") or ["default"]) for name, svc in services().items()}
    assert len(set(nets.values())) == 1, f"{rel(COMPOSE)}: services on different networks: {nets}"
    for name, svc in services().items():
        assert svc.get("healthcheck"), f"{rel(COMPOSE)}: service '{name}' has no healthcheck"


def test_every_dockerfile_and_build_context_exists() -> None:
    for name, svc in services().items():
        if svc.get("build") is None:
            continue
        assert build_context(svc).is_dir(), f"{rel(COMPOSE)}: service '{name}': build context missing"
        assert build_dockerfile(svc).is_file(), (
            f"{rel(COMPOSE)}: service '{name}': Dockerfile {build_dockerfile(svc)} does not exist"
        )


@pytest.mark.parametrize("path", [APP_DOCKERFILE, AST_DOCKERFILE], ids=rel)
def test_every_copied_path_exists_and_is_in_the_build_context(path: Path) -> None:
    users = services_built_from(path)
    assert users, f"{rel(COMPOSE)}: no service builds {rel(path)}"
    for svc in users.values():
        context = build_context(svc)
        for sources, _dest, ins in copies(path):
            for src in sources:
                where = f"{rel(path)}:{ins.line}: COPY {src}"
                assert (context / src).exists(), f"{where}: no such path in the build context {context}"
                assert not dockerignored(src), f"{where}: excluded by {rel(DOCKERIGNORE)}"


def test_every_asterisk_config_file_is_copied_into_the_image() -> None:
    copied = {src for sources, _, _ in copies(AST_DOCKERFILE) for src in sources}
    for path in sorted(AST_ETC.glob("*.conf")):
        assert rel(path) in copied, f"{rel(AST_DOCKERFILE)}: {rel(path)} is never copied into the image"
    assert rel(DIALPLAN) in copied, f"{rel(AST_DOCKERFILE)}: {rel(DIALPLAN)} is not copied"
    dest = {src: d for sources, d, _ in copies(AST_DOCKERFILE) for src in sources}
    assert dest[rel(DIALPLAN)] == "/etc/asterisk/extensions.conf", (
        f"{rel(AST_DOCKERFILE)}: {rel(DIALPLAN)} goes to {dest[rel(DIALPLAN)]}, not /etc/asterisk/extensions.conf"
    )


def test_compose_mounts_exist() -> None:
    named = set((compose().get("volumes") or {}).keys())
    for name, svc in services().items():
        for mount in svc.get("volumes") or []:
            source = mount.split(":")[0] if isinstance(mount, str) else str(mount.get("source", ""))
            if source.startswith((".", "/", "~")):
                assert (ROOT / source).exists(), (
                    f"{rel(COMPOSE)}: service '{name}' mounts missing path {source}"
                )
            else:
                assert source in named, f"{rel(COMPOSE)}: service '{name}' uses undeclared volume '{source}'"
        env_files = svc.get("env_file") or []
        for env_file in [env_files] if isinstance(env_files, str) else env_files:
            path = env_file if isinstance(env_file, str) else env_file.get("path", "")
            assert (ROOT / path).exists() or path == ".env", f"{rel(COMPOSE)}: env_file {path} missing"


def test_every_ivr_variable_is_a_setting() -> None:
    for name, svc in app_services().items():
        for key in environment(svc):
            if key.startswith("IVR_"):
                assert key in SETTING_ENV_NAMES, (
                    f"{rel(COMPOSE)}: service '{name}' sets {key}, which is no setting of ivr.config.Settings "
                    f"(known: {sorted(SETTING_ENV_NAMES)})"
                )
    for ins in dockerfile(APP_DOCKERFILE):
        if ins.keyword == "ENV":
            for key in re.findall(r"\b(IVR_[A-Z_]+)=", ins.args):
                assert key in SETTING_ENV_NAMES, f"{rel(APP_DOCKERFILE)}:{ins.line}: ENV {key} is no setting"


def test_app_services_have_the_settings_their_mode_needs_and_they_load(tmp_path: Path) -> None:
    for mode, group, required in (
        ("ARI", ari_app_services(), ARI_MODE_REQUIRED),
        ("per-call ARI", percall_replicas(), PER_CALL_REQUIRED),
        ("dialplan-only", dialplan_app_services(), DIALPLAN_MODE_REQUIRED),
    ):
        for (name, svc), (variant, dotenv) in itertools.product(group.items(), dotenv_variants()):
            env = resolved_environment(svc, dotenv)
            where = f"{rel(COMPOSE)}: {mode} service '{name}' ({variant})"
            missing = [k for k in required if not env.get(k)]
            assert not missing, f"{where} does not set {missing}"
            environ = {k: v for k, v in env.items() if k.startswith("IVR_")}
            environ["IVR_CONFIG"] = str(tmp_path / "absent.toml")
            settings = load_settings(environ=environ)  # raises ConfigError naming the bad variable
            assert settings.flows == Path("/app/flows"), f"{where}: IVR_FLOWS is not /app/flows"
            default = settings.default_flow
            if default is not None:
                assert default in flow_names(), (
                    f"{where}: IVR_DEFAULT_FLOW={default}, no flows/{default}.yaml"
                )


def test_flows_are_copied_where_ivr_flows_points() -> None:
    dest = {src: d for sources, d, _ in copies(APP_DOCKERFILE) for src in sources}
    assert dest.get("flows") == "/app/flows", f"{rel(APP_DOCKERFILE)}: flows/ must be copied to /app/flows"


def test_ari_url_matches_http_conf_and_the_asterisk_service() -> None:
    http = AST_ETC / "http.conf"
    assert conf_value(http, "general", "enabled") == "yes", f"{rel(http)}: enabled is not yes"
    bindaddr = conf_value(http, "general", "bindaddr")
    assert bindaddr in ("0.0.0.0", "::"), (
        f"{rel(http)}: bindaddr={bindaddr}: the ivr container cannot reach Asterisk's HTTP server"
    )
    bindport = conf_value(http, "general", "bindport")
    ast_name, ast = asterisk_service()
    for name, svc in ari_app_services().items():
        url = urlsplit(resolved_environment(svc)["IVR_ARI_URL"])
        assert url.hostname == ast_name, (
            f"{rel(COMPOSE)}: '{name}': IVR_ARI_URL host {url.hostname} is not the Asterisk service '{ast_name}'"
        )
        assert str(url.port) == bindport, (
            f"{rel(COMPOSE)}: '{name}': IVR_ARI_URL port {url.port} != bindport={bindport} in {rel(http)}"
        )
    assert bindport in exposed_ports(AST_DOCKERFILE), f"{rel(AST_DOCKERFILE)}: does not EXPOSE {bindport}"
    published = {(c, proto) for _, _, c, proto in published_ports(ast)}
    assert (bindport, "tcp") in published, (
        f"{rel(COMPOSE)}: '{ast_name}' does not publish ARI port {bindport}"
    )
    for host_ip, _, container, _ in published_ports(ast):
        if container == bindport:
            assert host_ip == "127.0.0.1", (
                f"{rel(COMPOSE)}: ARI port {bindport} published on {host_ip}, not 127.0.0.1"
            )


def test_audiosocket_ports_agree() -> None:
    exposed = exposed_ports(APP_DOCKERFILE)
    for name, svc in app_services().items():
        env = resolved_environment(svc)
        _, listen_port = parse_hostport(env["IVR_AUDIOSOCKET_LISTEN"])
        assert str(listen_port) in exposed, (
            f"{rel(APP_DOCKERFILE)}: EXPOSE {sorted(exposed)} lacks the AudioSocket port {listen_port} of '{name}'"
        )
        check = healthcheck_text(svc)
        if name in percall_replicas():  # readiness, as HAProxy asks for it
            _, metrics_port = parse_hostport(env["IVR_METRICS_LISTEN"])
            assert re.search(rf":{metrics_port}/readyz\b", check), (
                f"{rel(COMPOSE)}: healthcheck of '{name}' does not ask /readyz on port {metrics_port}: {check}"
            )
        else:
            assert re.search(rf"\b{listen_port}\b", check), (
                f"{rel(COMPOSE)}: healthcheck of '{name}' does not check port {listen_port}: {check}"
            )
        if "IVR_AUDIOSOCKET_ADVERTISE" in env:
            host, port = parse_hostport(env["IVR_AUDIOSOCKET_ADVERTISE"])
            assert port == listen_port, (
                f"{rel(COMPOSE)}: '{name}': IVR_AUDIOSOCKET_ADVERTISE port {port} != IVR_AUDIOSOCKET_LISTEN port {listen_port}"
            )
            assert host == name, (
                f"{rel(COMPOSE)}: '{name}': IVR_AUDIOSOCKET_ADVERTISE host '{host}' is not the service's own name: "
                "Asterisk would dial someone else"
            )


def test_dialplan_audiosocket_targets_are_dialplan_only_services() -> None:
    targets = audiosocket_targets()
    assert targets, f"{rel(DIALPLAN)}: no AudioSocket() or Dial(AudioSocket/...) examples"
    assert {s.app.lower() for s, _ in targets} == {"audiosocket", "dial"}, (
        f"{rel(DIALPLAN)}: needs both AudioSocket() and Dial(AudioSocket/...)"
    )
    dial_only = dialplan_app_services()
    for step, target in targets:
        host, port = parse_hostport(target)
        assert host in services(), f"{step.where()}: AudioSocket target host '{host}' is no compose service"
        assert host in dial_only, (
            f"{step.where()}: AudioSocket target '{host}' runs `ivr run` in ARI mode, which refuses UUIDs it did "
            "not ask for; point it at a service that runs `ivr run --no-ari`"
        )
        _, listen_port = parse_hostport(resolved_environment(dial_only[host])["IVR_AUDIOSOCKET_LISTEN"])
        assert port == listen_port, (
            f"{step.where()}: port {port} != IVR_AUDIOSOCKET_LISTEN port {listen_port} of '{host}'"
        )
    for step, dial in dial_strings():
        if dial.startswith("AudioSocket/"):
            assert re.search(r"/c\(slin(16)?\)$", dial), f"{step.where()}: {dial} lacks c(slin16) or c(slin)"


def test_dialplan_only_flow_has_no_transfers() -> None:
    for (name, svc), (variant, dotenv) in itertools.product(
        dialplan_app_services().items(), dotenv_variants()
    ):
        flow = resolved_environment(svc, dotenv)["IVR_DEFAULT_FLOW"]
        path = FLOWS / f"{flow}.yaml"
        where = f"{rel(COMPOSE)}: '{name}' ({variant})"
        assert path.is_file(), f"{where}: IVR_DEFAULT_FLOW={flow}, no {rel(path)}"
        found = list(transfers(yaml.safe_load(path.read_text(encoding="utf-8"))))
        assert not found, f"{where} runs {rel(path)} without ARI, but that flow transfers: {found}"


def test_ari_user_and_password_are_wired_through_the_entrypoint() -> None:
    ari = AST_ETC / "ari.conf"
    users = [s for s in conf(ari) if s.get("type") == "user"]
    assert len(users) == 1, f"{rel(ari)}: expected one type=user section, got {[u.name for u in users]}"
    user = users[0]
    assert user.get("read_only") == "no", f"{rel(ari)}: [{user.name}] must be read_only=no"
    password = user.get("password") or ""
    m = re.fullmatch(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", password)
    assert m, f"{rel(ari)}: [{user.name}] password must be a ${{VARIABLE}} placeholder, never a literal"
    variable = m[1]
    assert variable in rendered_variables("ari.conf"), (
        f"{rel(ENTRYPOINT)}: does not render ${{{variable}}} into ari.conf"
    )
    assert re.search(rf"check_secret\s+{variable}\b", entrypoint_text()), (
        f"{rel(ENTRYPOINT)}: does not check {variable} before rendering it"
    )
    ast_name, ast = asterisk_service()
    ast_env = environment(ast)
    assert variable in ast_env, f"{rel(COMPOSE)}: '{ast_name}' does not set {variable}, which ari.conf needs"
    source = {m["name"] for m in INTERPOLATION.finditer(ast_env[variable])}
    for name, svc in ari_app_services().items():
        env = environment(svc)
        assert env.get("IVR_ARI_USER") == user.name, (
            f"{rel(COMPOSE)}: '{name}': IVR_ARI_USER={env.get('IVR_ARI_USER')} but the ARI user in {rel(ari)} is [{user.name}]"
        )
        app_source = {m["name"] for m in INTERPOLATION.finditer(env.get("IVR_ARI_PASSWORD", ""))}
        assert source, f"{rel(COMPOSE)}: '{ast_name}' {variable} is not taken from .env"
        assert app_source == source, (
            f"{rel(COMPOSE)}: '{ast_name}' {variable}={ast_env[variable]!r} and '{name}' "
            f"IVR_ARI_PASSWORD={env.get('IVR_ARI_PASSWORD')!r} must come from the same .env variable"
        )


@pytest.mark.parametrize("template", ["ari.conf", "pjsip.conf", "websocket_client.conf"])
def test_template_placeholders_are_rendered_and_provided(template: str) -> None:
    path = AST_ETC / template
    needed = placeholders(path)
    rendered = rendered_variables(template)
    assert needed == rendered, (
        f"{rel(path)} uses {sorted(needed)} but {rel(ENTRYPOINT)} renders {sorted(rendered)} into it"
    )
    ast_name, ast = asterisk_service()
    missing = needed - set(environment(ast))
    assert not missing, f"{rel(COMPOSE)}: '{ast_name}' does not pass {sorted(missing)} needed by {rel(path)}"
    for secret in sorted(v for v in needed if "PASSWORD" in v):
        assert re.search(rf"^check_secret\s+{secret}\b", entrypoint_text(), re.M), (
            f"{rel(ENTRYPOINT)}: renders {secret} into {template} without `check_secret {secret}`"
        )
    dest = {src: d for sources, d, _ in copies(AST_DOCKERFILE) for src in sources}
    templates_dir = re.search(r"^TEMPLATES=(\S+)", entrypoint_text(), re.M)
    assert templates_dir, f"{rel(ENTRYPOINT)}: no TEMPLATES= line"
    assert dest.get(rel(path), "").rstrip("/") == templates_dir[1], (
        f"{rel(AST_DOCKERFILE)}: {rel(path)} is copied to {dest.get(rel(path))}, the entrypoint reads {templates_dir[1]}"
    )


def test_no_literal_passwords_in_asterisk_configs() -> None:
    for path in sorted(AST_ETC.glob("*.conf")):
        for section in conf(path):
            for key, value, line in section.items:
                if key in ("password", "secret", "md5_cred"):
                    assert re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", value), (
                        f"{rel(path)}:{line}: {key} must be an entrypoint placeholder, not a literal"
                    )


def test_entrypoint_is_installed_and_runs_asterisk_in_the_foreground() -> None:
    dest = {src: d for sources, d, _ in copies(AST_DOCKERFILE) for src in sources}
    installed = dest.get(rel(ENTRYPOINT))
    assert installed, f"{rel(AST_DOCKERFILE)}: {rel(ENTRYPOINT)} is not copied"
    entry = [ins for ins in dockerfile(AST_DOCKERFILE) if ins.keyword == "ENTRYPOINT"]
    assert entry, f"{rel(AST_DOCKERFILE)}: no ENTRYPOINT"
    assert yaml.safe_load(entry[-1].args) == [installed], (
        f"{rel(AST_DOCKERFILE)}: ENTRYPOINT is not {installed}"
    )
    assert re.search(r"^exec /usr/sbin/asterisk -f\b", entrypoint_text(), re.M), (
        f"{rel(ENTRYPOINT)}: must end with `exec /usr/sbin/asterisk -f` (foreground, PID 1 gets signals)"
    )
    users = [ins.args for ins in dockerfile(AST_DOCKERFILE) if ins.keyword == "USER"]
    assert users, f"{rel(AST_DOCKERFILE)}: no USER: the image would run as root"
    assert users[-1] not in ("root", "0"), f"{rel(AST_DOCKERFILE)}: must run as a non-root USER"
    app_users = [ins.args for ins in dockerfile(APP_DOCKERFILE) if ins.keyword == "USER"]
    assert app_users, f"{rel(APP_DOCKERFILE)}: no USER: the image would run as root"
    assert app_users[-1] not in ("root", "0"), f"{rel(APP_DOCKERFILE)}: must run as a non-root USER"


def test_stasis_app_name_matches_ivr_ari_app() -> None:
    apps = {resolved_environment(s)["IVR_ARI_APP"] for s in ari_app_services().values()}
    assert len(apps) == 1, f"{rel(COMPOSE)}: ARI services disagree on IVR_ARI_APP: {apps}"
    (app,) = apps
    steps = stasis_steps()
    assert steps, f"{rel(DIALPLAN)}: no Stasis() calls"
    for step, args in steps:
        assert args[0] == app, f"{step.where()}: Stasis({args[0]}, ...) but IVR_ARI_APP={app}"


def test_every_flow_named_in_the_dialplan_exists() -> None:
    named: list[tuple[Step, str]] = []
    for step, args in stasis_steps():
        named += [(step, a.partition("=")[2]) for a in args[1:] if a.startswith("flow=")]
    for step in dialplan().steps():
        if step.app.lower() == "set" and step.args.startswith("IVR_FLOW="):
            named.append((step, step.args.partition("=")[2]))
    assert named, f"{rel(DIALPLAN)}: no flow=NAME or Set(IVR_FLOW=NAME)"
    for step, flow in named:
        if "$" not in flow:
            assert flow in flow_names(), f"{step.where()}: flow={flow} but flows/{flow}.yaml does not exist"
    for key in ("IVR_DEFAULT_FLOW", "IVR_DIALPLAN_FLOW"):
        value = env_example().get(key)
        if value:
            assert value in flow_names(), f"{rel(ENV_EXAMPLE)}: {key}={value}, no flows/{value}.yaml"


def test_every_transfer_target_of_the_flows_exists() -> None:
    found = flow_transfers()
    assert found, "flows/*.yaml: no transfer steps to check (update this test if that is intended)"
    endpoints = pjsip_objects("endpoint")
    for where, t in found:
        endpoint = t.get("endpoint")
        if endpoint is not None:
            tech, _, resource = str(endpoint).partition("/")
            if tech == "PJSIP" and "{" not in resource:
                name = resource.split("@")[0]
                assert name in endpoints, (
                    f"{where}: transfer endpoint {endpoint} but {rel(AST_ETC / 'pjsip.conf')} has no endpoint [{name}]"
                )
            continue
        context, exten = t.get("context"), str(t.get("extension"))
        priority = int(t.get("priority", 1))
        if context is None or "{" in str(context) or "{" in exten:
            continue
        assert context in dialplan().contexts, (
            f"{where}: transfer to context '{context}', missing in {rel(DIALPLAN)}"
        )
        assert extension_exists(str(context), exten, priority), (
            f"{where}: transfer to {context},{exten},{priority}, but [{context}] in {rel(DIALPLAN)} has no such extension"
        )


def test_dialplan_references_resolve() -> None:
    plan = dialplan()
    for context, incs in plan.includes.items():
        for inc, line in incs:
            assert inc in plan.contexts, (
                f"{rel(DIALPLAN)}:{line}: [{context}] includes missing context '{inc}'"
            )
    for step in plan.steps():
        if step.app.lower() == "goto":
            args = split_args(step.args)
            if len(args) == 3 and "$" not in step.args:
                ctx, ext, prio = args
                assert extension_exists(ctx, ext, int(prio)), (
                    f"{step.where()}: Goto({step.args}) leads nowhere"
                )
    endpoints = pjsip_objects("endpoint")
    for step, dial in dial_strings():
        tech, _, resource = dial.partition("/")
        if tech == "PJSIP" and "$" not in resource.split("@")[0]:
            name = resource.split("@")[0].split(",")[0]
            assert name in endpoints, (
                f"{step.where()}: Dial(PJSIP/{name}) but pjsip.conf has no endpoint [{name}]"
            )
    for name, values in endpoints.items():
        endpoint_context = values.get("context")
        assert endpoint_context in plan.contexts, (
            f"pjsip.conf: endpoint [{name}] context={endpoint_context} is not in {rel(DIALPLAN)}"
        )


def test_pjsip_objects_reference_each_other() -> None:
    path = rel(AST_ETC / "pjsip.conf")
    auths, aors = pjsip_objects("auth"), pjsip_objects("aor")
    transports = pjsip_objects("transport")
    assert transports, f"{path}: no transport"
    for name, values in pjsip_objects("endpoint").items():
        for aor in filter(None, (values.get("aors") or "").split(",")):
            assert aor.strip() in aors, f"{path}: endpoint [{name}] aors={aor} has no [{aor}] type=aor"
        for auth in filter(None, (values.get("auth") or "").split(",")):
            assert auth.strip() in auths, f"{path}: endpoint [{name}] auth={auth} has no [{auth}] type=auth"
        transport = values.get("transport")
        assert transport in transports, f"{path}: endpoint [{name}] transport={transport} is not defined"


def test_sip_and_rtp_ports_are_published() -> None:
    ast_name, ast = asterisk_service()
    published = {(c, proto) for _, _, c, proto in published_ports(ast)}
    for name, values in pjsip_objects("transport").items():
        _, port = parse_hostport(values["bind"], default_port=5060)
        proto = values.get("protocol", "udp")
        assert (str(port), proto) in published, (
            f"{rel(COMPOSE)}: '{ast_name}' does not publish SIP {port}/{proto} of pjsip.conf [{name}]"
        )
    rtp = AST_ETC / "rtp.conf"
    start, end = conf_value(rtp, "general", "rtpstart"), conf_value(rtp, "general", "rtpend")
    assert (f"{start}-{end}", "udp") in published, (
        f"{rel(COMPOSE)}: '{ast_name}' must publish exactly the RTP range {start}-{end}/udp of {rel(rtp)}, "
        f"publishes {sorted(published)}"
    )
    assert f"{start}-{end}" in exposed_ports(AST_DOCKERFILE), (
        f"{rel(AST_DOCKERFILE)}: EXPOSE lacks {start}-{end}"
    )
    for host_ip, host, container, _ in published_ports(ast):
        assert host == container, f"{rel(COMPOSE)}: {host}->{container}: SIP/RTP ports must map to themselves"
        assert host_ip, f"{rel(COMPOSE)}: port {container} must name the host address it is published on"


def test_modules_conf_loads_what_the_project_needs_and_the_image_builds_it() -> None:
    path = AST_ETC / "modules.conf"
    assert modules_conf().get("autoload") == ["no"], f"{rel(path)}: expected autoload=no with explicit loads"
    loaded = loaded_modules()
    missing = REQUIRED_MODULES - loaded
    assert not missing, f"{rel(path)}: does not load {sorted(missing)}"
    for module in sorted(set(modules_conf().get("noload", []))):
        assert module.removesuffix(".so") not in REQUIRED_MODULES, (
            f"{rel(path)}: noload => {module} is needed"
        )
    enabled = menuselect_enabled(AST_DOCKERFILE)
    built = {m for m in enabled if not SOUND_PACKAGES.match(m) and m not in NOT_MODULES}
    assert loaded - built == set(), (
        f"{rel(path)} loads {sorted(loaded - built)}, not enabled in {rel(AST_DOCKERFILE)}"
    )
    assert built - loaded == set(), (
        f"{rel(AST_DOCKERFILE)} builds {sorted(built - loaded)}, never loaded by {rel(path)}"
    )
    assert any(m.startswith("CORE-SOUNDS-EN-") for m in enabled), (
        f"{rel(AST_DOCKERFILE)}: no English core sounds"
    )


def test_every_dialplan_application_function_and_technology_is_loaded() -> None:
    loaded = loaded_modules()
    text = DIALPLAN.read_text(encoding="utf-8")
    code = "\n".join(strip_comment(line) for line in text.splitlines())
    for step in dialplan().steps():
        app = step.app.lower()
        assert app in APP_MODULES, (
            f"{step.where()}: application {step.app} is not in APP_MODULES of this test"
        )
        module = APP_MODULES[app]
        assert module is None or module in loaded, (
            f"{step.where()}: {step.app} needs {module}.so in modules.conf"
        )
    for func in sorted(set(re.findall(r"\$\{([A-Z_]+)\(", code))):
        assert func in FUNCTION_MODULES, (
            f"{rel(DIALPLAN)}: function {func}() is not in FUNCTION_MODULES of this test"
        )
        module = FUNCTION_MODULES[func]
        assert module is None or module in loaded, (
            f"{rel(DIALPLAN)}: {func}() needs {module}.so in modules.conf"
        )
    for step, dial in dial_strings():
        tech = dial.partition("/")[0]
        assert tech in TECH_MODULES, f"{step.where()}: channel technology {tech} is not in TECH_MODULES"
        module = TECH_MODULES[tech]
        assert module is None or module in loaded, (
            f"{step.where()}: {tech}/ needs {module}.so in modules.conf"
        )


def test_stasis_failure_falls_back_to_audio() -> None:
    for step, _ in stasis_steps():
        steps = dialplan().contexts[step.context][step.exten]
        after = [s for s in steps if s.line > step.line]
        assert after, (
            f"{step.where()}: nothing after Stasis(): a caller would get dead air when the app is down"
        )
        target = after[0]
        if target.app.lower() == "goto":
            ctx, ext, _prio = split_args(target.args)
            target_steps = dialplan().contexts[ctx][ext]
        else:
            target_steps = after
        args = " ".join(s.args for s in target_steps)
        assert re.search(r'STASISSTATUS\}"?\s*=\s*"?FAILED', args), (
            f"{step.where()}: the step after Stasis() never checks STASISSTATUS = FAILED"
        )
        assert any(s.app.lower() in ("playback", "queue", "dial", "goto") for s in target_steps), (
            f"{step.where()}: the STASISSTATUS=FAILED branch plays nothing"
        )


def test_env_example_lists_exactly_the_compose_variables() -> None:
    used = compose_variables()
    listed = set(env_example())
    assert not used - listed, f"{rel(ENV_EXAMPLE)}: missing {sorted(used - listed)} used by {rel(COMPOSE)}"
    assert not listed - used, (
        f"{rel(ENV_EXAMPLE)}: lists {sorted(listed - used)}, which {rel(COMPOSE)} never uses"
    )
    for key, value in env_example().items():
        if "PASSWORD" in key or key.endswith(("_KEY", "_SECRET", "_TOKEN")):
            assert value == "" or value.startswith("change-me"), (
                f"{rel(ENV_EXAMPLE)}: {key} must be empty or an obvious change-me placeholder"
            )
    assert dockerignored(".env"), (
        f"{rel(DOCKERIGNORE)}: .env (real passwords) must not reach the build context"
    )


def test_ivr_image_runs_ivr_run() -> None:
    assert dockerfile_cmd(APP_DOCKERFILE)[:2] == ["ivr", "run"], (
        f"{rel(APP_DOCKERFILE)}: CMD is not `ivr run`"
    )
    args: dict[str, str] = {}
    stages: set[str] = set()
    bases: set[str] = set()
    for ins in dockerfile(APP_DOCKERFILE):
        if ins.keyword == "ARG":
            name, _, default = ins.args.partition("=")
            args.setdefault(name, default)
        elif ins.keyword == "FROM":
            words = ins.args.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m[1], m[0]), words[0])
            if image not in stages:
                bases.add(image)
            if len(words) == 3 and words[1].upper() == "AS":
                stages.add(words[2])
    assert bases == {"python:3.11-slim"}, (
        f"{rel(APP_DOCKERFILE)}: base images {bases}, expected python:3.11-slim"
    )
    for name, svc in app_services().items():
        cmd = command(svc)
        assert cmd[:2] == ["ivr", "run"], f"{rel(COMPOSE)}: '{name}' runs {cmd}, not `ivr run`"


# ----------------------------------------------------------------------------- the scale-out topology


@dataclass
class HAProxyConfig:
    sections: dict[str, list[str]]
    """``"frontend ari_percall"`` -> its lines (comments dropped)."""

    def lines(self, kind: str, name: str | None = None) -> list[str]:
        for header, body in self.sections.items():
            words = header.split()
            if words[0] == kind and (name is None or (len(words) > 1 and words[1] == name)):
                return body
        raise AssertionError(f"{rel(HAPROXY_CFG)}: no '{kind} {name or ''}' section")

    def option(self, kind: str, name: str | None, keyword: str) -> list[str]:
        return [line for line in self.lines(kind, name) if line.split()[0] == keyword]


@cache
def haproxy_cfg() -> HAProxyConfig:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in HAPROXY_CFG.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not line[0].isspace():
            current = sections.setdefault(line.strip(), [])
        else:
            assert current is not None, f"{rel(HAPROXY_CFG)}: '{line.strip()}' outside any section"
            current.append(line.strip())
    return HAProxyConfig(sections)


def haproxy_backend_name() -> str:
    [default] = haproxy_cfg().option("frontend", "ari_percall", "default_backend")
    return default.split()[1]


def haproxy_servers() -> dict[str, tuple[str, int, int | None]]:
    """server name -> (host, port, check port) of the per-call backend."""
    found = {}
    for line in haproxy_cfg().option("backend", haproxy_backend_name(), "server"):
        words = line.split()
        host, port = parse_hostport(words[2])
        check = int(words[words.index("port") + 1]) if "port" in words else None
        found[words[1]] = (host, port, check)
    return found


def ws_client(path: Path = WS_CLIENT) -> dict[str, str]:
    [section] = [s for s in conf(path) if s.get("type") == "websocket_client"]
    return {"name": section.name, **{k: v for k, v, _ in section.items}}


def outbound_app() -> Section:
    found = [s for s in conf(AST_ETC / "ari.conf") if s.get("type") == "outbound_websocket"]
    assert len(found) == 1, f"{rel(AST_ETC / 'ari.conf')}: expected one type=outbound_websocket section"
    return found[0]


def test_asterisk_per_call_connection_goes_to_haproxy_which_forwards_to_the_replicas() -> None:
    client = ws_client()
    assert client["connection_type"] == "per_call_config", f"{rel(WS_CLIENT)}: not per_call_config"
    assert client["protocols"] == "ari", f"{rel(WS_CLIENT)}: protocols must be ari"
    uri = urlsplit(client["uri"])
    assert uri.scheme == "ws", f"{rel(WS_CLIENT)}: {uri.scheme}://, but HAProxy's frontend speaks plain ws://"
    assert uri.hostname == "haproxy", f"{rel(WS_CLIENT)}: uri host {uri.hostname} is not the haproxy service"
    [bind] = haproxy_cfg().option("frontend", "ari_percall", "bind")
    assert bind.split()[1] == f":{uri.port}", (
        f"{rel(HAPROXY_CFG)}: the per-call frontend binds {bind.split()[1]}, {rel(WS_CLIENT)} connects to {uri.port}"
    )
    servers = haproxy_servers()
    replicas = percall_replicas()
    assert set(servers) == set(replicas), (
        f"{rel(HAPROXY_CFG)}: servers {sorted(servers)} are not the compose replicas {sorted(replicas)}"
    )
    for name, svc in replicas.items():
        env = resolved_environment(svc)
        settings = load_settings(
            environ={k: v for k, v in env.items() if k.startswith("IVR_")}, toml_path=None
        )
        host, port, check = servers[name]
        assert host == name, f"{rel(HAPROXY_CFG)}: server {name} points at {host}, not the service '{name}'"
        assert port == settings.percall_listen[1], (
            f"{rel(HAPROXY_CFG)}: server {name} port {port} != IVR_ARI_PERCALL_LISTEN of '{name}'"
        )
        assert settings.percall_listen[0] == "0.0.0.0", f"'{name}': per-call server must listen on 0.0.0.0"
        assert uri.path == settings.ari_percall_path, (
            f"{rel(WS_CLIENT)}: uri path {uri.path} != IVR_ARI_PERCALL_PATH {settings.ari_percall_path} of '{name}'"
        )
        assert settings.metrics_listen is not None
        _, metrics_port = parse_hostport(settings.metrics_listen)
        assert check == metrics_port, (
            f"{rel(HAPROXY_CFG)}: server {name} is checked on port {check}, its /readyz is on {metrics_port}"
        )
        assert str(settings.percall_listen[1]) in exposed_ports(APP_DOCKERFILE), (
            f"{rel(APP_DOCKERFILE)}: does not EXPOSE the per-call port {settings.percall_listen[1]}"
        )
    backend = haproxy_backend_name()
    assert haproxy_cfg().option("backend", backend, "option") == ["option httpchk GET /readyz"], (
        f"{rel(HAPROXY_CFG)}: backend {backend} must check readiness with GET /readyz"
    )
    tunnel = [line for line in haproxy_cfg().lines("defaults") if line.startswith("timeout tunnel")]
    assert tunnel, f"{rel(HAPROXY_CFG)}: no 'timeout tunnel': HAProxy would cut listening calls"
    mounts = services()["haproxy"].get("volumes") or []
    assert f"./{rel(HAPROXY_CFG)}:/usr/local/etc/haproxy/haproxy.cfg:ro" in mounts, (
        f"{rel(COMPOSE)}: 'haproxy' does not mount {rel(HAPROXY_CFG)} read-only where the image reads it"
    )
    [monitor] = haproxy_cfg().option("frontend", "health", "monitor-uri")
    [health_bind] = haproxy_cfg().option("frontend", "health", "bind")
    assert f"127.0.0.1{health_bind.split()[1]}{monitor.split()[1]}" in healthcheck_text(
        services()["haproxy"]
    ), f"{rel(COMPOSE)}: the haproxy healthcheck does not ask its monitor-uri"


def test_per_call_credentials_and_app_agree_between_asterisk_and_the_replicas() -> None:
    client = ws_client()
    ast_name, ast = asterisk_service()
    m = re.fullmatch(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", client["password"])
    assert m, f"{rel(WS_CLIENT)}: password must be a ${{VARIABLE}} placeholder"
    variable = m[1]
    source = {n["name"] for n in INTERPOLATION.finditer(environment(ast).get(variable, ""))}
    assert source, f"{rel(COMPOSE)}: '{ast_name}' does not take {variable} from .env"
    outbound = outbound_app()
    users = [
        s.name for s in conf(AST_ETC / "ari.conf") if s.get("type") == "user" and s.get("read_only") == "no"
    ]
    assert outbound.get("local_ari_user") in users, (
        f"{rel(AST_ETC / 'ari.conf')}: local_ari_user={outbound.get('local_ari_user')} is no read-write user"
    )
    assert outbound.get("websocket_client_id") == client["name"], (
        f"{rel(AST_ETC / 'ari.conf')}: websocket_client_id={outbound.get('websocket_client_id')}, "
        f"{rel(WS_CLIENT)} defines [{client['name']}]"
    )
    assert outbound.get("subscribe_all") == "no", f"{rel(AST_ETC / 'ari.conf')}: subscribe_all must be no"
    for name, svc in percall_replicas().items():
        env = environment(svc)
        assert resolved_environment(svc)["IVR_ARI_PERCALL_USER"] == client["username"], (
            f"{rel(COMPOSE)}: '{name}' IVR_ARI_PERCALL_USER != username of {rel(WS_CLIENT)}"
        )
        app_source = {n["name"] for n in INTERPOLATION.finditer(env.get("IVR_ARI_PERCALL_PASSWORD", ""))}
        assert app_source == source, (
            f"{rel(COMPOSE)}: '{name}' IVR_ARI_PERCALL_PASSWORD and '{ast_name}' {variable} must come from "
            "the same .env variable"
        )
        assert outbound.get("apps") == resolved_environment(svc)["IVR_ARI_APP"], (
            f"{rel(AST_ETC / 'ari.conf')}: apps={outbound.get('apps')} but '{name}' serves IVR_ARI_APP="
            f"{resolved_environment(svc)['IVR_ARI_APP']}"
        )


def test_the_image_template_and_the_example_for_other_asterisks_agree() -> None:
    image, example = ws_client(WS_CLIENT), ws_client(WS_CLIENT_EXAMPLE)
    differ = {k for k in image.keys() | example.keys() if image.get(k) != example.get(k)}
    assert differ <= {"uri", "password"}, (
        f"{rel(WS_CLIENT)} and {rel(WS_CLIENT_EXAMPLE)} differ in {sorted(differ - {'uri', 'password'})}"
    )
    example_apps = conf(AST_ETC / "ari_outbound.conf.example")
    [ex] = [s for s in example_apps if s.get("type") == "outbound_websocket"]
    image_app = outbound_app()
    assert {k: v for k, v, _ in ex.items} == {k: v for k, v, _ in image_app.items}, (
        f"{rel(AST_ETC / 'ari.conf')} [{image_app.name}] and ari_outbound.conf.example differ"
    )


def test_replicas_share_postgres_and_the_prompt_cache_and_keep_their_own_spool() -> None:
    pg = services()["postgres"]
    pg_env = resolved_environment(pg)
    pg_source = {n["name"] for n in INTERPOLATION.finditer(environment(pg).get("POSTGRES_PASSWORD", ""))}
    caches, spools = set(), []
    for name, svc in percall_replicas().items():
        env = resolved_environment(svc)
        url = urlsplit(env["IVR_RECORDS_URL"])
        assert url.scheme == "postgresql", f"{rel(COMPOSE)}: '{name}' IVR_RECORDS_URL is not PostgreSQL"
        assert url.password is None, (
            f"{rel(COMPOSE)}: '{name}' puts a password in IVR_RECORDS_URL (use PGPASSWORD)"
        )
        assert (url.hostname, url.username, url.path.lstrip("/")) == (
            "postgres",
            pg_env["POSTGRES_USER"],
            pg_env["POSTGRES_DB"],
        ), f"{rel(COMPOSE)}: '{name}' IVR_RECORDS_URL does not name the postgres service's user and database"
        source = {n["name"] for n in INTERPOLATION.finditer(environment(svc).get("PGPASSWORD", ""))}
        assert source == pg_source, f"{rel(COMPOSE)}: '{name}' PGPASSWORD is not POSTGRES_PASSWORD's variable"
        assert "postgres" in (svc.get("depends_on") or {}), (
            f"{rel(COMPOSE)}: '{name}' does not wait for postgres"
        )
        mounts = {m.split(":")[1]: m.split(":")[0] for m in svc.get("volumes") or []}
        cache_dir = env["IVR_PROMPT_CACHE"]
        cache_volume = next((v for path, v in mounts.items() if cache_dir.startswith(path)), None)
        assert cache_volume, f"{rel(COMPOSE)}: '{name}' IVR_PROMPT_CACHE {cache_dir} is on no volume"
        caches.add(cache_volume)
        spool = env["IVR_RECORDS_SPOOL"]
        spool_volume = next((v for path, v in mounts.items() if spool.startswith(path)), None)
        assert spool_volume, (
            f"{rel(COMPOSE)}: '{name}' IVR_RECORDS_SPOOL {spool} is on no volume (lost at restart)"
        )
        spools.append(spool_volume)
        extras = interpolate(str(svc["build"]["args"]["IVR_EXTRAS"]), env_example())
        assert "postgres" in extras.split(","), f"{rel(COMPOSE)}: '{name}' image lacks the postgres extra"
    assert len(caches) == 1, f"{rel(COMPOSE)}: the replicas should share one prompt cache volume: {caches}"
    assert len(set(spools)) == len(spools), f"{rel(COMPOSE)}: replicas share a records spool: {spools}"


KUBERNETES = ROOT / "deploy" / "kubernetes" / "ivr.yaml"


def test_the_kubernetes_shape_matches_the_app_and_the_compose_replicas(tmp_path: Path) -> None:
    docs = {d["kind"]: d for d in yaml.safe_load_all(KUBERNETES.read_text(encoding="utf-8"))}
    where = rel(KUBERNETES)
    deployment, service = docs["Deployment"], docs["Service"]
    assert deployment["spec"]["replicas"] >= 2, f"{where}: fewer than two replicas"
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env: dict[str, str] = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = str(item["value"])
        else:
            ref = item["valueFrom"]
            assert "secretKeyRef" in ref or "fieldRef" in ref, f"{where}: {item['name']} from {ref}"
            if "PASSWORD" in item["name"] or item["name"] == "IVR_RECORDS_URL":
                assert "secretKeyRef" in ref, f"{where}: {item['name']} must come from a Secret"
            env[item["name"]] = (
                "postgresql://ivr@db:5432/ivr" if item["name"] == "IVR_RECORDS_URL" else "secret-value"
            )
        if item["name"].startswith("IVR_"):
            assert item["name"] in SETTING_ENV_NAMES, f"{where}: {item['name']} is no setting"
    assert not [k for k in env if "PASSWORD" in k and env[k] != "secret-value"], (
        f"{where}: a literal password"
    )
    concrete = {
        k: v.replace("$(POD_IP)", "10.0.0.7").replace("$(POD_NAME)", "ivr-7f9c") for k, v in env.items()
    }
    environ = {k: v for k, v in concrete.items() if k.startswith("IVR_")}
    environ["IVR_CONFIG"] = str(tmp_path / "absent.toml")
    settings = load_settings(environ=environ)
    assert settings.ari_mode == "per_call"
    assert env["IVR_AUDIOSOCKET_ADVERTISE"].startswith("$(POD_IP):"), (
        f"{where}: each pod must advertise its own address for media"
    )
    assert env["IVR_INSTANCE_ID"] == "$(POD_NAME)", f"{where}: one instance id per pod"
    assert ports["percall"] == settings.percall_listen[1]
    assert ports["audiosocket"] == settings.listen[1]
    assert settings.metrics_listen is not None
    assert ports["metrics"] == parse_hostport(settings.metrics_listen)[1]
    readiness = container["readinessProbe"]["httpGet"]
    assert (readiness["path"], readiness["port"]) == ("/readyz", "metrics"), f"{where}: readiness is /readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["terminationGracePeriodSeconds"] > settings.shutdown_grace_seconds, (
        f"{where}: terminationGracePeriodSeconds must exceed IVR_SHUTDOWN_GRACE_SECONDS (SIGKILL cuts the drain)"
    )
    [svc_port] = service["spec"]["ports"]
    assert svc_port["targetPort"] == "percall"
    assert service["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]
    assert svc_port["port"] == urlsplit(ws_client()["uri"]).port, (
        f"{where}: the Service port differs from the per-call uri port of {rel(WS_CLIENT)}"
    )
    compose_replica = resolved_environment(next(iter(percall_replicas().values())))
    for key in ("IVR_ARI_APP", "IVR_ARI_PERCALL_USER", "IVR_ARI_PERCALL_LISTEN", "IVR_METRICS_LISTEN"):
        assert env[key] == compose_replica[key], f"{where}: {key} differs from docker-compose.yml's replicas"
