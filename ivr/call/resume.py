"""Calls that outlive the instance serving them: checkpoints out, the takeover in.

While a call runs, its flow state is saved as a checkpoint in the records store at every step change
(:meth:`CallCheckpoints.save`: no I/O here, the store coalesces and writes in the background). When the
instance serving it dies, Asterisk brings the caller back to an instance, either on a reopened per-call
socket (``resumed``) or, through the shipped dialplan's ``Stasis()`` retry, as a new ``StasisStart`` for
the same channel. That instance looks the checkpoint up by the caller's channel id and takes the call
over with a compare-and-set on the checkpoint (:meth:`CallCheckpoints.lookup`): of any number of
instances trying, exactly one wins. What the dead instance left in Asterisk (its media channel, its
bridge, an agent leg) is removed (:meth:`CallCheckpoints.clear_previous`), unless the caller is still
talking to an agent there, and the flow resumes at its step (:meth:`CallCheckpoints.resumed_engine`).

An instance that is alive but lost the call's socket (a balancer restart) lets the call go without a
record once another instance has resumed it (:meth:`CallCheckpoints.taken_over`); if nobody does, it
records the call itself: every call ends in one record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

from ivr.ari.client import AriResources
from ivr.ari.errors import AriError
from ivr.call.flows import FlowCatalog
from ivr.call.report import CallReport
from ivr.call.transfer import EndpointTransfer, TransferCall
from ivr.flow.engine import FlowEngine, SnapshotError
from ivr.ops.records.model import CallRecord, Checkpoint, RecordsError

if TYPE_CHECKING:
    from ivr.call.ari_link import CallLink

log = logging.getLogger("ivr.call")

LOOKUP_TIMEOUT = 1.0
"""How long a call waits for its checkpoint lookup before it starts as a new call (a database outage
must not hold callers up: calls go on, records are spooled)."""
HANDOVER_WAIT = 10.0
"""How long an instance that lost a call's socket waits for another instance to resume it before it
records the call itself (Asterisk reconnects at once; the dialplan's retry comes after 2 s)."""
CARRIED_REPORT = (
    "started_at",
    "caller",
    "direction",
    "linkedid",
    "greeting_latency_ms",
    "dtmf",
    "response_latency_ms",
    "errors",
    "recordings",
)
"""What the record of a resumed call keeps from the instance that began it."""


class CheckpointStore(Protocol):
    """The part of :class:`~ivr.ops.records.RecordStore` calls use (the records store of the process)."""

    instance: str

    def save_checkpoint(self, checkpoint: Checkpoint) -> None: ...

    async def load_checkpoint(
        self, call_id: str | None = None, *, channel_id: str | None = None, linkedid: str | None = None
    ) -> Checkpoint | None: ...

    async def resume_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint | None: ...

    async def get(self, call_id: str) -> CallRecord | None: ...


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of looking a call's checkpoint up: ``checkpoint`` is ours now, or ``lost`` says that
    another instance took the call first; neither: no checkpoint (a new call, or none readable)."""

    checkpoint: Checkpoint | None = None
    lost: bool = False

    def part(self, key: str) -> Any:
        """A part of the checkpoint's state: ``engine``, ``report``, ``resources``, ``bridged``."""
        state = self.checkpoint.state if self.checkpoint is not None else None
        return state.get(key) if isinstance(state, Mapping) else None

    @property
    def engine_state(self) -> Mapping[str, Any] | None:
        state = self.part("engine")
        return state if isinstance(state, Mapping) else None

    @property
    def resources(self) -> Mapping[str, str]:
        """What the previous owner created in Asterisk for the call (``bridge``, ``media``, ``agent``)."""
        found = self.part("resources")
        return {str(k): str(v) for k, v in found.items()} if isinstance(found, Mapping) else {}


@dataclass
class CallCheckpoints:
    """One call's checkpoints: saved as it goes; looked up and claimed when the call comes back."""

    store: CheckpointStore
    call_id: str
    channel_id: str
    resources: dict[str, str] = field(default_factory=dict)
    """What this call creates in Asterisk (``bridge``, ``media``, ``agent``): a next owner removes it."""
    claim: Claim = field(default_factory=Claim)
    stopped: bool = False
    """No more saves: the call ended, or another owner drives it now."""
    _lookup: asyncio.Future[Claim] | None = None
    _failed: bool = False

    # -- coming back -------------------------------------------------------------------------------

    def start_lookup(self) -> None:
        """Look the call's checkpoint up now, while the call's setup runs."""
        if self._lookup is None:
            self._lookup = asyncio.ensure_future(self._find())

    async def claimed(self) -> Claim:
        if self._lookup is None:
            return self.claim
        return await self._lookup

    def cancel(self) -> None:
        self.stopped = True
        if self._lookup is not None and not self._lookup.done():
            self._lookup.cancel()

    async def _find(self) -> Claim:
        """Find the call's checkpoint and take it over (compare-and-set); a failure is a new call."""
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT):
                found = await self.store.load_checkpoint(channel_id=self.channel_id)
                if found is None:
                    return self.claim
                taken = await self.store.resume_checkpoint(found)
        except (RecordsError, TimeoutError) as exc:
            log.warning("call %s: checkpoint lookup failed, starting as a new call: %s", self.call_id, exc)
            return self.claim
        if taken is None:
            log.warning("call %s: %s took the call over first", self.call_id, found.instance or "another")
            return Claim(found, lost=True)
        self.claim = Claim(taken)
        began = [i for i in taken.instances if i != taken.instance] or list(taken.instances[:1])
        log.info(
            "call %s: resuming at step %s (began on %s; resume %d)",
            self.call_id,
            taken.step,
            ", ".join(began),
            taken.resumes,
        )
        return self.claim

    async def clear_previous(self, ari: AriResources, leftovers: Mapping[str, Any] | None) -> str | None:
        """Remove what the previous owner left in Asterisk: the channels and bridges of a reopened
        socket's application (``leftovers``) and the checkpoint's own list. When the caller is still in
        its bridge with an agent, keep both and return the agent's channel id (the call goes on)."""
        claim = await self.claimed()
        resources = claim.resources
        channels = [str(c) for c in (leftovers or {}).get("channel_ids") or []]
        bridges = [str(b) for b in (leftovers or {}).get("bridge_ids") or []]
        agent = claim.part("bridged")
        if isinstance(agent, str) and agent in channels and resources.get("bridge") in bridges:
            await clear_leftovers(ari, self.channel_id, channels=channels, keep=[agent])
            return agent
        removed = await clear_leftovers(
            ari,
            self.channel_id,
            channels=[*channels, resources.get("media", ""), resources.get("agent", "")],
            bridges=[*bridges, resources.get("bridge", "")],
        )
        if removed:
            log.info("call %s: removed %d leftovers of the call's previous owner", self.call_id, removed)
        return None

    def resumed_engine(self, flows: FlowCatalog, report: CallReport) -> FlowEngine | None:
        """The engine restored from the claimed checkpoint (the report gets what the first owner knew),
        or None when it cannot be: the call then starts its flow again."""
        cp, state = self.claim.checkpoint, self.claim.engine_state
        if cp is None or state is None:
            return None
        try:
            engine = flows.engine(cp.flow)
            engine.restore(state)
        except (LookupError, SnapshotError) as exc:
            log.warning("call %s: cannot resume its flow, starting it again: %s", self.call_id, exc)
            return None
        if engine.version != cp.flow_version:
            log.info(
                "call %s: resumed on flow %s version %s (it began on %s)",
                self.call_id,
                cp.flow,
                engine.version,
                cp.flow_version,
            )
        carry_report(report, self.claim.part("report"))
        return engine

    def stasis_args(self) -> dict[str, str]:
        """The Stasis arguments the call began with (a reopened socket has none): ``flow`` and the rest."""
        state = self.claim.engine_state or {}
        call = state.get("call")
        args = call.get("args") if isinstance(call, Mapping) else None
        pairs = {str(k): str(v) for k, v in (args if isinstance(args, Mapping) else {}).items()}
        if state.get("flow"):
            pairs["flow"] = str(state["flow"])
        return pairs

    # -- going on ------------------------------------------------------------------------------

    def save(
        self,
        engine: FlowEngine,
        report: CallReport,
        *,
        linkedid: str | None = None,
        bridged: str | None = None,
        engine_state: Mapping[str, Any] | None = None,
    ) -> Mapping[str, Any] | None:
        """Save the call's state now; returns the engine snapshot saved. Never raises, never waits."""
        if self.stopped or not (engine.resumable or engine_state is not None):
            return None
        snapshot = dict(engine_state) if engine_state is not None else engine.snapshot()
        state: dict[str, Any] = {
            "engine": snapshot,
            "report": {k: getattr(report, k) for k in CARRIED_REPORT},
            "resources": dict(self.resources),
        }
        if bridged is not None:
            state["bridged"] = bridged
        step = str(snapshot.get("step", engine.current_step))
        try:
            self.store.save_checkpoint(
                Checkpoint(
                    self.call_id,
                    flow=engine.library.root,
                    flow_version=engine.version,
                    step=step,
                    variables=engine.checkpoint_variables(),
                    retries={f"{step}:{k}": v for k, v in engine.retries.items() if v},
                    state=state,
                    channel_id=self.channel_id,
                    linkedid=linkedid,
                )
            )
        except RecordsError as exc:
            if not self._failed:  # one line per call, not one per step
                log.warning(
                    "call %s: checkpoint not saved (the call cannot be resumed): %s", self.call_id, exc
                )
            self._failed = True
            return None
        return snapshot

    async def taken_over(self, wait: float = HANDOVER_WAIT) -> str | None:
        """After this instance lost the call's socket: the instance that resumed the call within
        ``wait`` (or that finished and recorded it), or None when nobody did."""
        self.stopped = True
        ours = self.claim.checkpoint
        baseline = ours.resumes if ours is not None else 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            await asyncio.sleep(min(0.5, max(0.0, deadline - loop.time())))
            with contextlib.suppress(RecordsError, TimeoutError):
                async with asyncio.timeout(LOOKUP_TIMEOUT):
                    found = await self.store.load_checkpoint(self.call_id)
                    if found is not None and (
                        found.resumes > baseline or found.instance != self.store.instance
                    ):
                        return found.instance
                    if found is None and await self.store.get(self.call_id) is not None:
                        return "another instance (the call is recorded)"
            if loop.time() >= deadline:
                return None


class _Running(Protocol):
    @property
    def engine(self) -> FlowEngine: ...


class ResumeHost(Protocol):
    """What resuming a call needs of the app serving it."""

    @property
    def flows(self) -> FlowCatalog: ...


class Resumable:
    """What an ARI call does when it continues a call another owner began (a mixin of
    :class:`~ivr.call.ari_call.AriCall`; the attributes below are the call's)."""

    app: ResumeHost
    link: CallLink
    caller_id: str
    leftovers: Mapping[str, Any] | None
    checkpoints: CallCheckpoints | None
    runtime: _Running | None
    transfer: EndpointTransfer | None
    bridge_id: str
    superseded: bool
    _bridge_created: bool
    _last_state: Mapping[str, Any] | None

    @property
    def report(self) -> CallReport:
        raise NotImplementedError

    async def _resumed_engine(self) -> FlowEngine | None:
        """The engine restored from the call's checkpoint (None: a new call, or not resumable)."""
        if self.checkpoints is None:
            return None
        claim = await self._claimed()
        if claim.checkpoint is not None and self.leftovers is None:
            # back through the dialplan's Stasis() retry: the caller left the old bridge, which stays
            await self.checkpoints.clear_previous(self.link.ari, None)
        return self.checkpoints.resumed_engine(self.app.flows, self.report)

    async def _claimed(self) -> Claim:
        """The checkpoint this call continues (looked up since the call began), if any."""
        return await self.checkpoints.claimed() if self.checkpoints is not None else Claim()

    async def _adopted(self) -> bool:
        """A reopened per-call socket: remove what the previous owner left in Asterisk, or, when the
        caller is still bridged with an agent there, keep that bridge and see the call to its end."""
        if self.leftovers is None:
            return False
        if self.checkpoints is None:
            await clear_leftovers(
                self.link.ari,
                self.caller_id,
                channels=self.leftovers.get("channel_ids") or [],
                bridges=self.leftovers.get("bridge_ids") or [],
            )
            return False
        agent = await self.checkpoints.clear_previous(self.link.ari, self.leftovers)
        if agent is None:
            return False
        claim = await self._claimed()
        self.bridge_id, self._bridge_created = claim.resources["bridge"], True
        self.transfer = EndpointTransfer.adopt(cast("TransferCall", self), agent)
        carry_report(self.report, claim.part("report"))
        state = claim.engine_state or {}
        self.report.flow = str(state.get("flow", ""))
        self.report.path = [
            f"{p[0]}:{p[1]}" if p[0] != self.report.flow else p[1] for p in state.get("path", [])
        ]
        self.report.transcript = [(t[0], t[1]) for t in state.get("transcript", [])]
        self.report.outcome, self.report.reason = "transferred", "bridged with an agent (resumed)"
        log.info("call %s: resumed while bridged with %s; the conversation goes on", self.caller_id, agent)
        await self.transfer.wait_end()
        return True

    def _save_checkpoint(self) -> None:
        """The runtime's checkpoint hook (every step change): the flow state, for whoever resumes."""
        if self.checkpoints is not None and self.runtime is not None:
            saved = self.checkpoints.save(self.runtime.engine, self.report, linkedid=self.report.linkedid)
            if saved is not None:
                self._last_state = saved

    async def _settle_lost(self) -> None:
        """This instance lost the call's socket: no record here once another owner has the call."""
        taken = "a newer socket of this instance" if self.superseded else None
        if taken is None and self.checkpoints is not None:
            taken = await self.checkpoints.taken_over()
        if taken is not None:
            self.report.outcome, self.report.reason = "handed_over", f"resumed by {taken}"
            self.report.handed_over = True
            return
        reason = "the per-call ARI connection was lost mid-call and no instance resumed the call"
        self.report.outcome, self.report.reason = "error", reason
        self.report.errors.append(reason)


def carry_report(report: CallReport, carried: Any) -> None:
    """Put what the first owner knew of the call into this owner's report (the call has one record)."""
    if not isinstance(carried, Mapping):
        return
    for key in CARRIED_REPORT:
        value = carried.get(key)
        if value is None:
            continue
        current = getattr(report, key)
        if key == "started_at":
            report.started_at = min(float(value), report.started_at)
        elif isinstance(current, list) and isinstance(value, list):
            setattr(report, key, [*value, *current])
        elif not current:
            setattr(report, key, value)


async def clear_leftovers(
    ari: AriResources,
    caller_id: str,
    *,
    channels: Iterable[str] = (),
    bridges: Iterable[str] = (),
    keep: Iterable[str] = (),
) -> int:
    """Hang up channels (never the caller, nor ``keep``) and destroy bridges; how many were there."""
    spared = {caller_id, *keep}
    removed = 0
    for channel_id in dict.fromkeys(channels):
        if channel_id and channel_id not in spared:
            with contextlib.suppress(AriError):
                await ari.hangup(channel_id)
                removed += 1
    for bridge_id in dict.fromkeys(bridges):
        if bridge_id:
            with contextlib.suppress(AriError):
                await ari.destroy_bridge(bridge_id)
                removed += 1
    return removed
