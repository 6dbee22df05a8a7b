"""The edge agent: pulls its own commands, runs each at most once, reports everything as events.

    agent = Agent(load_agent_config("agent.toml"))
    await agent.run(stop)            # until `stop` is set (SIGTERM in `mahavishnu agent run`)

Four loops share one connection and one LMDB state file (edge.state):
- commands: fetch from the device's durable consumer (explicit acks), decide with
  edge.lifecycle.admit, run through the handler registry, and write the outcome events
  and the ledger mark in one transaction *before* acknowledging. A redelivery after a
  crash finds the ledger mark and is acknowledged without running again;
- outbox: send the stored events in order, a page at once, each with its event id as
  Nats-Msg-Id, and forget them only once JetStream acknowledged them (so offline events
  wait, and a resend after a crash is deduplicated by the stream); woken by what queues an event;
- heartbeat and telemetry: an event every interval, published at once while online with
  nothing queued before it, queued in the outbox otherwise (offline, or refused).
Every write is awaited until it is on disk, in the state's writer thread (its fsync never
stops the loop, and writes that wait together share one: edge.group_commit).
Beside them, edge.shell.ShellHost serves remote terminal sessions (shell_allowlist).

Connections are retried with jittered exponential backoff (edge.backoff); while the
server is away, commands wait on the server and events wait in the outbox.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import hashlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from core import subjects
from core.commands import ending
from core.errors import StoreUnavailable
from core.events import (
    CommandIssued,
    CommandRejected,
    CommandSucceeded,
    DeviceHeartbeat,
    EventDecodeError,
    ReportedState,
    TelemetryReported,
    decode_command,
    encode,
)
from core.events.base import Event, utc_now
from core.store import Identity, connect
from core.store.acks import MSG_ID, parse_pub_ack
from core.updates.states import INSTALL_COMMAND
from edge import backoff
from edge.agent_config import AgentConfig
from edge.builtin import CONFIG_WRITES, default_registry, system_info
from edge.handlers import HandlerContext, Registry, is_rerunnable
from edge.lifecycle import admit, execute, one_line, recovered_events, running_events
from edge.shell import ShellHost
from edge.state import AgentState, OutboxItem

if TYPE_CHECKING:  # imported for real only with [update] (Agent._start_updates), and with probe_port
    from edge.probes import AgentProbes
    from edge.updates.handler import InstallHandler

log = logging.getLogger("mahavishnu.agent")

COMMANDS_STREAM = "COMMANDS"
# How long one request for the next command waits on the server. An idle fleet asks this
# often: 2,000 agents at 5 s were 400 requests a second for nothing, at 30 s they are 67.
# A request the server forgot (it restarted) would hold a command back this long, so a
# reconnection asks again at once (Agent._ask_again).
FETCH_WAIT_S = 30.0
OUTBOX_PAGE = 100  # events published at once
PUBLISH_WAIT_S = 5.0  # for the stream's acknowledgement of a published event
# Commands whose success changes what the device reports: its config values, its software.
REPORTS_AFTER = CONFIG_WRITES | {INSTALL_COMMAND}
FORGET_SENT_AFTER_S = 2.0  # an outbox idle this long deletes the entries of what it sent (AgentState.note_sent)


class Agent:
    """One device's agent; see the module docstring."""

    def __init__(self, config: AgentConfig, *, registry: Registry | None = None) -> None:
        self.config = config
        self.device_id = config.device_id
        self.registry = registry or default_registry(exec_allowlist=config.exec_allowlist)
        self.started = time.monotonic()
        self.nc: Client | None = None
        self.shells: ShellHost | None = None  # remote terminal sessions, once connected
        self.state: AgentState | None = None
        self.ran: list[str] = []  # command ids run by this process, in order (for tests and logs)
        self._wake_outbox = asyncio.Event()
        self._running: set[str] = set()
        self._reconnects = 0
        self._loops: list[asyncio.Task[None]] = []
        self._closed = asyncio.Event()  # set by nats-py when it closed the connection for good
        self._ask_again = asyncio.Event()  # set on reconnection: the server may have forgotten the waiting fetch
        self.finished: Counter[str] = Counter()  # commands finished by this process, by outcome (for /metrics)
        self.updates: InstallHandler | None = None  # update.install, when agent.toml has [update]

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; returns after closing the connection and the state file."""
        self.state = AgentState(self.config.state)
        probes: AgentProbes | None = None
        try:
            if self.config.update is not None:
                await self._start_updates()
            if self.config.probe_port:
                from edge.probes import AgentProbes

                probes = AgentProbes(
                    self.config.probe_host,
                    self.config.probe_port,
                    health=self.healthy,
                    ready=self.ready,
                    metrics=self.metrics,
                )
                await probes.start()
            while not stop.is_set():
                self.nc = await self._connect(stop)
                if self.nc is None:
                    return
                await self._session(stop)
        finally:
            if probes is not None:
                await probes.stop()
            if self.nc is not None and not self.nc.is_closed:
                await self.nc.close()
            self.state.close()

    async def _start_updates(self) -> None:
        """End what a stopped agent left of an update, then take update.install (edge.updates, imported only now)."""
        assert self.state is not None and self.config.update is not None
        from edge.updates.handler import start
        from edge.updates.record import Records

        self.updates = await start(self.config.update, self.device_id, Records(self.state))
        if self.updates.name not in self.registry:
            self.registry.register(self.updates)

    async def _session(self, stop: asyncio.Event) -> None:
        """Serve one connection until `stop`, or until nats-py closes it for good.

        nats-py stops reconnecting when the server refuses it while reconnecting (say, the
        mesh's identity service was not back yet after the server restarted: the server's
        authentication timeout is an -ERR, and nats-py closes on any -ERR): the client is
        closed and would stay closed, so the agent connects anew, with its backoff.
        """
        assert self.nc is not None and self.state is not None
        shells = self.shells = ShellHost(self.nc, self.device_id, self.config.shell_allowlist)
        await shells.start()
        await self.state.aenqueue([self._reported()])  # what this device's configuration is, at every start
        loops = self._loops = [
            asyncio.create_task(self._commands(stop), name=f"{self.device_id}-commands"),
            asyncio.create_task(self._outbox(stop), name=f"{self.device_id}-outbox"),
            asyncio.create_task(self._every(self.config.heartbeat_interval, self._heartbeat, stop)),
            asyncio.create_task(self._every(self.config.telemetry_interval, self._telemetry, stop)),
        ]
        # What exists now (modules, the connection, the state, these loops) lives as long as
        # the agent: the collector need never look at it again. Its full passes over it were
        # the command path's worst stalls where agents share a process (500 agents: 225,000
        # objects, 150-450 ms a pass, measured in bench/fleet.py); one agent's are shorter,
        # and as needless. gc.freeze() costs nothing (it moves a list), also when repeated.
        gc.freeze()
        ended = [asyncio.create_task(stop.wait()), asyncio.create_task(self._closed.wait())]
        try:
            await asyncio.wait(ended, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (*loops, *ended):
                task.cancel()
            await asyncio.gather(*loops, *ended, return_exceptions=True)
            await shells.stop()
        if not stop.is_set():
            log.warning("connection closed for good; connecting anew", extra={"device": self.device_id})

    # --- probes ------------------------------------------------------------------

    def healthy(self) -> bool:
        """Alive: every loop still runs (a loop that ended before the stop has crashed)."""
        return bool(self._loops) and not any(task.done() for task in self._loops)

    def ready(self) -> bool:
        """Connected, and everything recorded on the device has reached the mesh."""
        connected = self.nc is not None and self.nc.is_connected
        return connected and self.state is not None and self.state.outbox_size() == 0

    def metrics(self) -> bytes:
        from edge.probes import exposition  # loaded with the probe server, which alone asks

        outbox = self.state.outbox_size() if self.state is not None else 0
        return exposition(dict(self.finished), outbox=outbox, connected=self.nc is not None and self.nc.is_connected)

    # --- connection ----------------------------------------------------------

    def identity(self) -> Identity:
        return Identity(self.config.servers[0], self.config.ca, self.config.cert, self.config.key)

    async def _connect(self, stop: asyncio.Event) -> Client | None:
        attempt = 0
        while not stop.is_set():
            closed = self._closed = asyncio.Event()

            async def on_closed(closed: asyncio.Event = closed) -> None:  # this connection's event, not a later one
                closed.set()

            try:
                nc = await connect(
                    self.identity(),
                    name=self.device_id,
                    inbox_prefix=subjects.device_inbox_prefix(self.device_id),
                    error_cb=self._on_error,
                    reconnect_to_server_handler=self._next_server,
                    reconnected_cb=self._on_reconnected,
                    closed_cb=on_closed,
                )
            except StoreUnavailable as exc:
                wait = backoff.delay(attempt)
                attempt += 1
                log.warning(
                    "cannot connect; retrying",
                    extra={"device": self.device_id, "reason": str(exc), "retry_in_s": round(wait, 2)},
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
                continue
            # A supervisor (and bench/agent_footprint.py) learns from this line that the agent is on the mesh.
            log.info("connected", extra={"device": self.device_id})
            return nc
        return None

    def _next_server(self, servers: list[Any], info: dict[str, Any]) -> tuple[Any, float]:
        """nats-py's reconnect hook: the next server, after a jittered exponential delay."""
        wait = backoff.delay(self._reconnects)
        self._reconnects += 1
        return servers[self._reconnects % len(servers)], wait

    async def _on_reconnected(self) -> None:
        self._reconnects = 0
        self._wake_outbox.set()
        self._ask_again.set()
        log.info("reconnected", extra={"device": self.device_id})

    async def _on_error(self, error: Exception) -> None:
        log.warning("connection error", extra={"device": self.device_id, "reason": one_line(error)})

    # --- commands ------------------------------------------------------------

    async def _commands(self, stop: asyncio.Event) -> None:
        assert self.nc is not None
        consumer = subjects.device_consumer(self.device_id)
        psub = await self.nc.jetstream().pull_subscribe_bind(durable=consumer, stream=COMMANDS_STREAM)
        while not stop.is_set():
            try:
                messages = await self._next_commands(psub)
            except (nats.errors.TimeoutError, TimeoutError):
                continue  # nothing to do: ask again
            except (nats.errors.Error, nats.js.errors.Error) as exc:
                if self.nc.is_closed:  # closed for good (nats-py does not always say so through closed_cb)
                    self._closed.set()
                    return
                log.warning("fetching commands failed", extra={"device": self.device_id, "reason": one_line(exc)})
                await asyncio.sleep(backoff.delay(1))  # back off, then ask again (e.g. while reconnecting)
                continue
            for message in messages:
                await self.handle(message)

    async def _next_commands(self, psub: Any) -> list[Msg]:
        """The next command, waiting up to FETCH_WAIT_S; [] when a reconnection asks to send the request anew.

        A fetch given up on loses nothing: a command that reaches it later waits in the
        subscription, and the next fetch takes it first.
        """
        self._ask_again.clear()
        fetch = asyncio.ensure_future(psub.fetch(1, timeout=FETCH_WAIT_S))
        again = asyncio.ensure_future(self._ask_again.wait())
        try:
            await asyncio.wait((fetch, again), return_when=asyncio.FIRST_COMPLETED)
        finally:
            again.cancel()
            if not fetch.done():
                fetch.cancel()
                # How it ends is of no interest (nats-py turns a cancel into ConnectionClosedError
                # when the connection is closed): take it, so that asyncio does not log it.
                fetch.add_done_callback(_taken)
        if not fetch.done():
            return []
        messages: list[Msg] = fetch.result()
        return messages

    async def handle(self, message: Msg) -> None:
        """Decide, run at most once, record, then acknowledge one delivered command."""
        assert self.state is not None
        try:
            command = decode_command(message.data)
        except EventDecodeError as exc:
            await self._refuse(message, f"malformed command: {exc.reason}")
            return
        if not isinstance(command, CommandIssued):
            await self._refuse(message, f"not a command: {command.tag}")
            return
        if command.device_id != self.device_id:
            await self._refuse(message, "the command is addressed to another device")
            return
        if command.command_id in self._running:
            await message.in_progress()  # a redelivery of what is running now: keep it, do not run twice
            return
        admission = admit(
            command, now=utc_now(), registry=self.registry, ledger_state=self.state.ledger_state(command.command_id)
        )
        if admission.action != "run" or admission.handler is None:
            events = list(admission.events)
            if admission.action == "interrupted":
                events = recovered_events(command, self.registry) or events
            if events:
                await self.state.afinish(command.command_id, events)
                self._count(events)
            await self.acknowledge(message)
            self._wake_outbox.set()
            return
        starting = [*admission.events, *running_events(command)]
        rerunnable = is_rerunnable(admission.handler)
        if not rerunnable:  # recorded before it runs: after a crash it is reported interrupted, never run twice
            await self.state.amark_started(command.command_id, starting)
            self._wake_outbox.set()
        self._running.add(command.command_id)
        keepalive = asyncio.create_task(self._keep_in_progress(message))
        try:
            context = HandlerContext(
                device_id=self.device_id, config=self.state, command_id=command.command_id, connection=self.nc
            )
            outcome = await execute(command, admission.handler, context)
        finally:
            keepalive.cancel()
            self._running.discard(command.command_id)
        if command.name in REPORTS_AFTER and any(isinstance(e, CommandSucceeded) for e in outcome):
            outcome = [*outcome, self._reported()]  # the shadow's reported half, in the same transaction
        # A command that changes nothing is recorded once, started and finished together: a
        # crash before this runs it again after the redelivery, to the same effect (one fsync a command, not two).
        await self.state.afinish(command.command_id, [*starting, *outcome] if rerunnable else outcome)
        self._count(outcome)
        self.ran.append(command.command_id)
        self._wake_outbox.set()
        await self.acknowledge(message)

    def _count(self, events: Sequence[Event]) -> None:
        for event in events:
            if (outcome := ending(event)) is not None:
                self.finished[outcome] += 1

    async def acknowledge(self, message: Msg) -> None:
        """Acknowledge a delivery; the outcome is already on disk, so a lost ack only costs a skipped redelivery."""
        with contextlib.suppress(nats.errors.Error):
            await message.ack()

    async def _refuse(self, message: Msg, reason: str) -> None:
        assert self.state is not None
        command_id = message.subject.rsplit(".", 1)[-1]
        log.warning("refused a command", extra={"device": self.device_id, "command_id": command_id, "reason": reason})
        rejected: list[Event] = [
            CommandRejected(command_id=command_id, device_id=self.device_id, actor=self.device_id, reason=reason)
        ]
        await self.state.afinish(command_id, rejected)
        self._count(rejected)
        self._wake_outbox.set()
        with contextlib.suppress(nats.errors.Error):
            await message.term()  # never redeliver what can never be run

    async def _keep_in_progress(self, message: Msg) -> None:
        while True:
            await asyncio.sleep(self.config.ack_wait / 3)  # well before the server would redeliver
            with contextlib.suppress(nats.errors.Error):
                await message.in_progress()

    # --- outbox --------------------------------------------------------------

    async def _outbox(self, stop: asyncio.Event) -> None:
        assert self.state is not None and self.nc is not None
        failures = 0
        while not stop.is_set():
            items = self.state.pending(OUTBOX_PAGE)
            if not items:
                # Asleep until there is something to send: whatever queues an event sets the
                # wake (so does a reconnect), and nothing is awaited between pending() and
                # clear(), so no wake is lost. An idle agent does not look at its outbox; it
                # deletes the entries of what it sent once, when it has been idle a while.
                self._wake_outbox.clear()
                if self.state.sent_unforgotten():
                    if not await _woken(self._wake_outbox, FORGET_SENT_AFTER_S):
                        await self.state.aforget_sent()
                    continue
                await self._wake_outbox.wait()
                continue
            sent, error = await self._publish(items)
            self.state.note_sent(sent)
            if error is None:
                failures = 0
                continue
            failures += 1
            log.info(
                "outbox waits",
                extra={"device": self.device_id, "reason": one_line(error), "outbox": self.state.outbox_size()},
            )
            await asyncio.sleep(backoff.delay(failures))  # offline or refused: try again later, in order

    async def _publish(self, items: list[OutboxItem]) -> tuple[list[OutboxItem], Exception | None]:
        """Publish a page of the outbox at once, then read the acknowledgements in order.

        Returns the items the stream stored, up to the first one it did not (and why not).
        All are in flight together, so a command's accepted, running and succeeded cost one
        round trip, not three. They leave in order on the one connection, and the stream
        stores them in that order; after a failure the rest of the page is sent again, and
        what the stream already had is dropped as a duplicate (their Nats-Msg-Id).
        """
        assert self.nc is not None
        replies = await asyncio.gather(
            *(self._store(item.subject, item.payload, item.event_id) for item in items), return_exceptions=True
        )
        for index, (item, reply) in enumerate(zip(items, replies, strict=True)):
            if isinstance(reply, nats.errors.Error | TimeoutError):
                return items[:index], reply
            if isinstance(reply, BaseException):
                raise reply
            ack = parse_pub_ack(reply.data)
            if ack.error is not None:
                return items[:index], RuntimeError(f"{item.subject} refused: {ack.error.description}")
        return items, None

    # --- heartbeat and telemetry --------------------------------------------

    async def _every(self, interval: float, make: Callable[[], Event], stop: asyncio.Event) -> None:
        """Queue `make()` now, then every `interval` seconds, the first of them after a random part of it.

        Agents that (re)connect together (a site's power comes back, the server restarted)
        would otherwise report in step forever: 2,000 agents started within 5 s sent their
        heartbeats in one 5 s wave every 30 s, and the commands sent during a wave waited up to
        0.4 s (bench/fleet.py). A wait is never longer than `interval`, so presence, judged by
        the age of the last heartbeat, reads the same.
        """
        assert self.state is not None
        wait = interval * random.uniform(0.5, 1.0)
        while not stop.is_set():
            sample = make()
            if not await self._sent_at_once(sample):
                await self.state.aenqueue([sample])
                self._wake_outbox.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
            wait = interval

    async def _sent_at_once(self, sample: Event) -> bool:
        """Publish a heartbeat or telemetry report now, if online with nothing queued before it; whether it was stored.

        A sample need not be on the device's disk before it is sent: an agent that dies before
        the stream has it loses it as it would have lost one not yet taken. So an online agent
        skips the outbox's two transactions (queued, then forgotten), each an fsync and a
        wake-up: most of an idle agent's work, and of a fleet's disk writes besides its
        commands. Offline, or with events waiting (they go first, in order), or when the
        stream does not say it stored it, the sample is queued as before; a copy that was
        stored after all is dropped by the stream as a duplicate (its event id is its Nats-Msg-Id).
        """
        assert self.state is not None
        if self.nc is None or not self.nc.is_connected or self.state.pending(1):
            return False
        try:
            reply = await self._store(sample.subject(), encode(sample), sample.event_id)
        except (nats.errors.Error, TimeoutError):
            return False
        return parse_pub_ack(reply.data).error is None

    async def _store(self, subject: str, payload: bytes, event_id: str) -> Msg:
        """Publish one event to its stream and wait for the acknowledgement (its event id deduplicates a resend)."""
        assert self.nc is not None
        return await self.nc.request(subject, payload, timeout=PUBLISH_WAIT_S, headers={MSG_ID: event_id})

    def _reported(self) -> ReportedState:
        """The device's config values, and with [update] its installed versions under "software"."""
        assert self.state is not None
        state = self.state.config_items()
        if self.updates is not None:
            state["software"] = self.updates.software()
        return ReportedState(device_id=self.device_id, actor=self.device_id, state=state)

    def _heartbeat(self) -> DeviceHeartbeat:
        assert self.state is not None
        return DeviceHeartbeat(
            device_id=self.device_id,
            actor=self.device_id,
            uptime_s=round(time.monotonic() - self.started, 3),
            outbox=self.state.outbox_size(),
            cert_fingerprint_sha256=certificate_fingerprint(self.config.cert),
        )

    def _telemetry(self) -> TelemetryReported:
        return TelemetryReported(
            device_id=self.device_id, actor=self.device_id, metrics=telemetry_metrics(system_info())
        )


def _taken(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


async def _woken(event: asyncio.Event, timeout: float) -> bool:
    """Whether `event` is set within `timeout` seconds."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
    return event.is_set()


def certificate_fingerprint(path: Path) -> str:
    """SHA-256 of the first certificate in a PEM file, hex (the CA registry's fingerprint); "" if unreadable."""
    try:
        text = path.read_text()
        body = text.split("-----BEGIN CERTIFICATE-----", 1)[1].split("-----END CERTIFICATE-----", 1)[0]
        return hashlib.sha256(base64.b64decode("".join(body.split()))).hexdigest()
    except (OSError, IndexError, ValueError):
        return ""


def telemetry_metrics(info: dict[str, Any]) -> dict[str, float]:
    """The numbers of `system_info()` worth a time series (pure)."""
    metrics: dict[str, float] = {}
    load = info.get("load_average") or []
    if load:
        metrics["load_1m"] = float(load[0])
    memory = info.get("memory") or {}
    if memory.get("available_bytes") is not None:
        metrics["memory_available_bytes"] = float(memory["available_bytes"])
    disk = info.get("disk") or {}
    if disk.get("free_bytes") is not None:
        metrics["disk_free_bytes"] = float(disk["free_bytes"])
    if info.get("uptime_s") is not None:
        metrics["uptime_s"] = float(info["uptime_s"])
    return metrics
