"""The SSH gateway: runs the commands of hosts registered with transport ssh, as their agent would.

    gateway = SshGateway(store, home.root, settings.ssh, metrics=SshMetrics(registry))
    await gateway.run(stop)                  # inside `up`, under keep_running

It learns the SSH hosts from their registration events (mesh.evt.device.*.ssh: what is
stored, then live), and pulls each host's commands from the same durable consumer an
agent would use (`device-<id>` on COMMANDS), so `cmd send|list|cancel` work unchanged.
Each command goes through the agent's own lifecycle (edge.lifecycle): admit (expired,
unknown or invalid: never run), Accepted and Running, execute under the command's
timeout, then the outcome. The events are the agent's, with the gateway as actor.

Exactly once in effect, as in the agent: an LMDB ledger and outbox
($MAHAVISHNU_HOME/ssh/gateway.lmdb, edge.state.AgentState) records the outcome and its
events in one transaction *before* the delivery is acknowledged; the outbox is then
appended to the stream (event ids deduplicate a resend). A redelivery of a finished
command is acknowledged without running again; one that was running when the gateway
stopped is reported failed (interrupted), never run twice.

Hosts registered with an update dir also take `update.install` (mahavishnu.gateways.ssh.updates):
the gateway verifies and downloads the artifact, installs it on the host over SFTP and SSH, and
reports the host's installed versions after a commit as a ReportedState ("software") of its own.

Its metrics (mahavishnu.gateways.ssh.metrics): connection attempts by outcome (host-key
refusals among them) and open connections, counted by the pool; commands by the terminal
state the gateway recorded, counted as they are recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg

from core import subjects
from core.commands import ending
from core.config import SshSettings
from core.errors import MahavishnuError
from core.events import (
    CommandIssued,
    CommandRejected,
    CommandSucceeded,
    Event,
    EventDecodeError,
    ReportedState,
    SshHostRegistered,
    decode,
)
from core.events.base import utc_now
from core.store import EventStore
from core.updates.states import INSTALL_COMMAND
from edge.handlers import Handler, HandlerContext, Registry
from edge.lifecycle import admit, execute, one_line, recovered_events, running_events
from edge.state import AgentState
from mahavishnu.control.devices import ACK_WAIT_S, consumer_config
from mahavishnu.control.permissions import COMMANDS_STREAM
from mahavishnu.gateways.ssh import credentials as ssh_credentials
from mahavishnu.gateways.ssh.errors import HostKeyMismatch
from mahavishnu.gateways.ssh.handlers import SshHost, handlers_for
from mahavishnu.gateways.ssh.metrics import SshMetrics
from mahavishnu.gateways.ssh.pool import SshPool, SshTarget
from mahavishnu.gateways.ssh.updates import SshUpdates, Steps
from mahavishnu.updates.trust.local import TrustFiles

log = logging.getLogger("mahavishnu.ssh_gateway")

ACTOR = "ssh-gateway"
REGISTRATIONS = f"{subjects.EVENTS_PREFIX}.device.*.ssh"
FETCH_WAIT_S = 2.0
MAX_IN_FLIGHT = 16  # commands of one host running (or waiting for a pooled connection) at once
HOUSEKEEPING_S = 5.0


def as_gateway(events: Sequence[Event]) -> list[Event]:
    """The lifecycle events with the gateway as their actor (pure): the host itself reported nothing."""
    return [msgspec.structs.replace(event, actor=ACTOR) for event in events]


def latest_registrations(events: Sequence[Event | None]) -> dict[str, SshHostRegistered]:
    """Each host's last registration (pure): registering again re-pins its key or changes its allowlist."""
    found: dict[str, SshHostRegistered] = {}
    for event in events:
        if isinstance(event, SshHostRegistered):
            found[event.device_id] = event
    return found


class SshGateway:
    """See the module docstring. `pool` is public for tests and metrics; `ran` lists the command ids run.

    `trust_dir` holds the TUF metadata the gateway trusts when it verifies updates for its
    hosts (default $MAHAVISHNU_HOME/ssh/trust); `update_steps` replaces verify and download
    (tests without a signed repository).
    """

    def __init__(
        self,
        store: EventStore,
        home_root: Path,
        settings: SshSettings,
        *,
        ack_wait_s: float = ACK_WAIT_S,
        metrics: SshMetrics | None = None,
        trust_dir: Path | None = None,
        update_steps: Steps | None = None,
    ) -> None:
        self.store = store
        self.home_root = home_root
        self.settings = settings
        self.ack_wait_s = ack_wait_s
        self.metrics = metrics
        self.pool = SshPool(
            max_per_host=settings.max_connections_per_host,
            connect_timeout=settings.connect_timeout,
            idle_timeout=settings.idle_timeout,
            metrics=metrics,
        )
        self.hosts: dict[str, SshHostRegistered] = {}
        self.updates = SshUpdates(home_root / "ssh", trust_dir or home_root / "ssh" / "trust", steps=update_steps)
        self.ran: list[str] = []
        self._state: AgentState | None = None
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._running: set[str] = set()
        self._send_lock = asyncio.Lock()
        self._stop = asyncio.Event()

    @property
    def ledger_path(self) -> Path:
        return self.home_root / "ssh" / "gateway.lmdb"

    async def run(self, stop: asyncio.Event) -> None:
        """Serve every registered SSH host until `stop` is set; raises when a host's loop crashed (to be restarted)."""
        self._stop = stop
        self.ledger_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The gateway verifies its hosts' updates from the mesh's root, as an enrolled agent does (ADR 0016).
        TrustFiles.of(self.home_root).give_root(self.updates.trust_dir)
        self._state = AgentState(self.ledger_path)
        sub = await self.store.nc.subscribe(REGISTRATIONS, cb=self._on_registration)
        try:
            stored = [s.event async for s in self.store.read(REGISTRATIONS)]
            for registration in latest_registrations(stored).values():
                self._register(registration)
            await self._send()  # what a previous run recorded but could not append
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), HOUSEKEEPING_S)
                await self.pool.reap()
                await self._send()
                for device_id, task in self._loops.items():
                    if task.done() and not stop.is_set():
                        raise MahavishnuError(
                            f"the SSH gateway's loop of {device_id} ended: {task.exception() or 'without an error'}"
                        )
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
            for task in self._loops.values():
                task.cancel()
            await asyncio.gather(*self._loops.values(), return_exceptions=True)
            self._loops.clear()
            await self.pool.close()
            self.updates.close()
            self._state.close()
            self._state = None

    # --- registrations ---------------------------------------------------------

    async def _on_registration(self, msg: Msg) -> None:
        try:
            event = decode(msg.data)
        except EventDecodeError as exc:
            log.warning("unreadable SSH registration", extra={"subject": msg.subject, "reason": exc.reason})
            return
        if isinstance(event, SshHostRegistered):
            self._register(event)

    def _register(self, registration: SshHostRegistered) -> None:
        known = registration.device_id in self.hosts
        self.hosts[registration.device_id] = registration
        log.info(
            "ssh host updated" if known else "ssh host served",
            extra={"device": registration.device_id, "host_key": registration.fingerprint_sha256},
        )
        if registration.device_id not in self._loops:
            self._loops[registration.device_id] = asyncio.create_task(
                self._commands(registration.device_id), name=f"ssh-{registration.device_id}"
            )

    def target(self, device_id: str) -> SshTarget:
        """Where the host's commands run: its registration, and its credential paths on this machine."""
        registration = self.hosts[device_id]
        credentials = ssh_credentials.load(self.home_root, device_id)
        return SshTarget(
            device_id=device_id,
            host=registration.host,
            port=registration.port,
            user=registration.user,
            host_key=registration.host_key,
            identity_file=credentials.identity_file,
            passphrase_file=credentials.passphrase_file,
        )

    def host(self, device_id: str) -> SshHost:
        return SshHost(
            target=self.target(device_id),
            pool=self.pool,
            command_timeout=self.settings.command_timeout,
            max_output=self.settings.max_output,
            on_mismatch=self._audit_mismatch,
        )

    def registry(self, device_id: str) -> Registry:
        host, registration = self.host(device_id), self.hosts[device_id]
        handlers: list[Handler] = handlers_for(host, list(registration.exec_allowlist))
        if registration.updates:
            handlers.append(self.updates.handler(host, registration))
        return Registry(handlers)

    # --- commands ----------------------------------------------------------------

    async def _commands(self, device_id: str) -> None:
        """Pull the host's commands and handle up to MAX_IN_FLIGHT at once; the pool bounds connections."""
        await self._recover_updates(device_id)
        consumer = subjects.device_consumer(device_id)
        await self.store.ensure_durable(COMMANDS_STREAM, consumer, consumer_config(device_id, self.ack_wait_s))
        psub = await self.store.nc.jetstream().pull_subscribe_bind(durable=consumer, stream=COMMANDS_STREAM)
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while not self._stop.is_set():
                room = MAX_IN_FLIGHT - len(in_flight)
                if room <= 0:
                    await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    messages = await psub.fetch(room, timeout=FETCH_WAIT_S)
                except (nats.errors.TimeoutError, TimeoutError):
                    continue
                except (nats.errors.Error, nats.js.errors.Error) as exc:
                    log.warning("fetching ssh commands failed", extra={"device": device_id, "reason": one_line(exc)})
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), 1.0)
                    continue
                for message in messages:
                    task = asyncio.create_task(self._handle_logged(device_id, message))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
        finally:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
            with contextlib.suppress(nats.errors.Error):
                await psub.unsubscribe()

    async def _recover_updates(self, device_id: str) -> None:
        """Before the host's commands: end the updates a stopped gateway left unfinished on it (switch back)."""
        registration = self.hosts[device_id]
        if not registration.updates:
            return
        try:
            ended = await self.updates.recover(self.host(device_id), registration)
        except MahavishnuError as exc:  # its commands still run; the update stays unended until the next start
            log.error("ssh update recovery failed", extra={"device": device_id, "reason": str(exc)})
            return
        for record in ended:
            log.warning(
                "ssh update ended at start",
                extra={"device": device_id, "command_id": record.command_id, "state": str(record.state)},
            )

    async def _handle_logged(self, device_id: str, message: Msg) -> None:
        """`handle`, in a task of its own: an error is logged (the delivery comes back after ack_wait)."""
        try:
            await self.handle(device_id, message)
        except MahavishnuError as exc:
            log.error("ssh command not handled", extra={"device": device_id, "reason": str(exc)})
        except Exception as exc:
            log.error("ssh command not handled", extra={"device": device_id, "reason": one_line(exc)}, exc_info=exc)

    async def handle(self, device_id: str, message: Msg) -> None:
        """Decide, run at most once, record, send, then acknowledge one delivered command."""
        state = self._state
        assert state is not None
        try:
            command = decode(message.data)
        except EventDecodeError as exc:
            await self._refuse(device_id, message, f"malformed command: {exc.reason}")
            return
        if not isinstance(command, CommandIssued) or command.device_id != device_id:
            await self._refuse(device_id, message, "not a command for this host")
            return
        if command.command_id in self._running:
            await message.in_progress()  # redelivered while it runs: keep it, never run it twice
            return
        try:
            registry = self.registry(device_id)
        except MahavishnuError as exc:  # the local credentials file is damaged
            registry = Registry()
            log.error("ssh host not usable", extra={"device": device_id, "reason": str(exc)})
        admission = admit(
            command, now=utc_now(), registry=registry, ledger_state=state.ledger_state(command.command_id)
        )
        if admission.action != "run" or admission.handler is None:
            events = list(admission.events)
            if admission.action == "interrupted":  # update.install knows how the update it ran ended
                events = recovered_events(command, registry) or events
            if events:
                self._finish(command.command_id, as_gateway(events))
            await self._send()
            await self._ack(message)
            return
        state.mark_started(command.command_id, as_gateway([*admission.events, *running_events(command)]))
        self._running.add(command.command_id)
        sending = asyncio.create_task(self._send())
        keepalive = asyncio.create_task(self._keep_in_progress(message))
        try:
            context = HandlerContext(
                device_id=device_id, config=state, command_id=command.command_id, connection=self.store.nc
            )
            outcome = await execute(command, admission.handler, context)
        finally:
            keepalive.cancel()
            self._running.discard(command.command_id)
        await sending
        if command.name == INSTALL_COMMAND and any(isinstance(e, CommandSucceeded) for e in outcome):
            # what the host runs now, as an agent reports it after an update (the shadow's reported half)
            software = {"software": self.updates.software(device_id)}
            outcome = [*outcome, ReportedState(device_id=device_id, actor=ACTOR, state=software)]
        self._finish(command.command_id, as_gateway(outcome))
        self.ran.append(command.command_id)
        log.info(
            "ssh command finished",
            extra={
                "device": device_id,
                "command_id": command.command_id,
                "command": command.name,
                "outcome": outcome[-1].tag if outcome else "",
            },
        )
        await self._send()
        await self._ack(message)

    async def _refuse(self, device_id: str, message: Msg, reason: str) -> None:
        assert self._state is not None
        command_id = message.subject.rsplit(".", 1)[-1]
        log.warning("refused an ssh command", extra={"device": device_id, "command_id": command_id, "reason": reason})
        if self._state.ledger_state(command_id) != "finished":
            self._finish(
                command_id, [CommandRejected(command_id=command_id, device_id=device_id, actor=ACTOR, reason=reason)]
            )
        await self._send()
        with contextlib.suppress(nats.errors.Error):
            await message.term()  # never redeliver what can never run

    def _finish(self, command_id: str, events: list[Event]) -> None:
        """Record a command's last events in the ledger (and outbox), and count the state it ended in."""
        assert self._state is not None
        self._state.finish(command_id, events)
        if self.metrics is not None:
            for state in filter(None, map(ending, events)):
                self.metrics.commands.labels(state.value).inc()

    async def _ack(self, message: Msg) -> None:
        """The outcome is in the ledger already: a lost ack costs only a redelivery that is skipped."""
        with contextlib.suppress(nats.errors.Error):
            await message.ack()

    async def _keep_in_progress(self, message: Msg) -> None:
        while True:
            await asyncio.sleep(self.ack_wait_s / 3)  # well before the server would redeliver
            with contextlib.suppress(nats.errors.Error):
                await message.in_progress()

    async def _send(self) -> None:
        """Append the outbox to the stream, oldest first; what fails stays for the next try (housekeeping)."""
        state = self._state
        if state is None:
            return
        async with self._send_lock:
            while items := state.pending(100):
                for item in items:
                    try:
                        await self.store.append(decode(item.payload))
                    except MahavishnuError as exc:
                        log.warning("ssh outbox waits", extra={"reason": str(exc), "outbox": state.outbox_size()})
                        return
                    state.mark_sent([item.id])

    async def _audit_mismatch(self, target: SshTarget, exc: HostKeyMismatch) -> None:
        log.warning(
            "ssh host key mismatch: refused",
            extra={"device": target.device_id, "endpoint": target.name, "pinned": exc.pinned, "seen": exc.seen},
        )
        with contextlib.suppress(MahavishnuError):  # the command's failure is recorded either way
            await self.store.audit.record(
                actor=ACTOR,
                category="ssh",
                action="ssh.host_key_mismatch",
                target=target.device_id,
                details={"endpoint": target.name, "pinned": exc.pinned, "seen": exc.seen},
            )
