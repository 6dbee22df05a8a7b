"""`mahavishnu up`: bring the mesh up on this machine and keep it up until told to stop.

Creates the state directory once, starts nats-server from the wheel under a supervisor
(or, with `--cluster N`, N nodes each under its own: mahavishnu.runtime.cluster), answers the
server's authorization requests for devices (mahavishnu.identity), creates the streams,
records `mesh.started`, keeps the read models up to date, serves /metrics, /health and
/ready (ready: connected and caught up), runs the MQTT bridge when [mqtt] port is set
(mahavishnu.gateways.mqtt.bridge), provisions devices that hold a claim
(mahavishnu.identity.provisioning), runs fleet campaigns (mahavishnu.campaigns), prints how
to connect, and on SIGINT or SIGTERM stops everything cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from importlib.metadata import version

import nats.errors
from nats.aio.client import Client
from prometheus_client import CollectorRegistry
from starlette.routing import BaseRoute

from core.audit import AuditTrail
from core.config import Settings
from core.errors import MahavishnuError
from core.events import MeshStarted, MeshStopped
from core.metrics import (
    CampaignMetrics,
    CodeIndexMetrics,
    CommandMetrics,
    EventStoreMetrics,
    ProjectionMetrics,
    UpdateMetrics,
    new_registry,
)
from core.probes import ProbeServer, ServerTLS
from core.store import EventStore, Identity, connect
from mahavishnu.campaigns.metrics import OrchestratorMetrics
from mahavishnu.campaigns.orchestrator import Orchestrator
from mahavishnu.control import commands, operators, tokens
from mahavishnu.control import requests as control_requests
from mahavishnu.gateways.mqtt import bridge as bridging
from mahavishnu.gateways.mqtt import devices as mqtt
from mahavishnu.gateways.shell.broker import ShellBroker, start_shell_broker
from mahavishnu.gateways.shell.journal import SessionJournal, journal_path
from mahavishnu.gateways.shell.session import Limits
from mahavishnu.gateways.ssh.gateway import SshGateway
from mahavishnu.gateways.ssh.metrics import SshMetrics
from mahavishnu.identity.provisioning import ProvisioningService
from mahavishnu.identity.service import start_provisioning
from mahavishnu.identity.thread import IdentityThread
from mahavishnu.observability import agents_online, command_latency, connection_audit, update_compliance
from mahavishnu.runtime.buckets import ensure_update_buckets
from mahavishnu.runtime.bundle import prepare_node
from mahavishnu.runtime.cluster import ClusterSupervisor, create_streams, prepare_cluster
from mahavishnu.runtime.clusterplan import stream_replicas
from mahavishnu.runtime.home import Home
from mahavishnu.runtime.hostplan import NodeSpec
from mahavishnu.runtime.provisioning import prepare
from mahavishnu.runtime.server import NatsServer
from mahavishnu.runtime.streams import streams_of
from mahavishnu.runtime.supervisor import RestartPolicy, Supervisor, keep_running
from mahavishnu.sites import hub as sites
from mahavishnu.updates import links, refusals
from mahavishnu.updates.door import ArtifactDoor
from mahavishnu.updates.trust import control as trust
from mahavishnu.updates.trust import refresher
from projections import http_api, http_auth
from projections.admission import Admission
from projections.codeindex.registering import register_at_start
from projections.codeindex.service import CodeIndexService
from projections.command_requests import Send
from projections.database import database_key
from projections.queries import ReadModels
from projections.query_service import start_query_service
from projections.service import ProjectionService

log = logging.getLogger("mahavishnu.up")

# The longest one step of a stop (a service's drain, the mesh.stopped append) waits: a server stopped by the
# same signal never answers, and the steps together stay within the unit's TimeoutStopSec (30 s).
STOP_STEP_S = 5.0
CODE_CLOSE_S = 10.0  # the longest a stop waits for the indexer's workers; they end with up's exit anyway


def mqtt_help(home: Home, settings: Settings) -> str:
    """What `up` prints about the MQTT listener (pure): where it is (every node's, in a cluster) and mosquitto
    lines that work: the device's command session, and a publisher beside it that leaves that session alone."""
    host = "127.0.0.1" if settings.mqtt.host in ("0.0.0.0", "::", "") else settings.mqtt.host
    device = home.root / "devices" / "ID"
    ports = [settings.mqtt.port + k for k in range(max(settings.server.cluster, 1))]
    tls = f"--cafile {home.ca_dir / 'ca.pem'} --cert {device}/cert.pem --key {device}/key.pem -h {host} -p {ports[0]}"
    return "\n".join(
        [
            f"  mqtt      {', '.join(f'mqtts://{host}:{port}' for port in ports)}"
            " (devices enrolled with --transport mqtt), e.g.",
            f"            mosquitto_sub {tls} -i ID -c -q 1 -t 'mesh/cmd/ID/#'",
            f"            mosquitto_pub {tls} -i ID/pub -q 1 -t mesh/evt/device/ID/telemetry -m '{{\"temp_c\": 41.5}}'",
        ]
    )


def connection_help(identity: Identity, home: Home) -> str:
    """What `up` prints so a person or a tool can connect (pure): every node's URL in a cluster."""
    tls = f"--tlsca {identity.ca} --tlscert {identity.cert} --tlskey {identity.key}"
    return "\n".join(
        [
            f"mesh is up: {', '.join(identity.servers)}",
            f"  state     {home.root}",
            f"  CA        {identity.ca}",
            f"  cert      {identity.cert}",
            f"  key       {identity.key}",
            f"  nats CLI  nats --server {','.join(identity.servers)} {tls} stream ls",
            "  env       mahavishnu env --json   (the same, for scripts)",
            "  stop      Ctrl-C",
        ]
    )


def restart_policy(settings: Settings) -> RestartPolicy:
    """How `up` restarts its children (servers, services) and when it gives up on one (pure)."""
    return RestartPolicy(
        initial=settings.server.restart_backoff,
        maximum=settings.server.restart_backoff_max,
        max_crashes=settings.server.give_up_after,
        window=settings.server.give_up_window,
    )


async def start_servers(
    home: Home, settings: Settings, out: Callable[[str], None] = print, node: NodeSpec | None = None
) -> Supervisor | ClusterSupervisor:
    """Prepare the state directory and start the supervised nats-server, or each node of `[server] cluster`,
    or this host's node of a cluster across hosts (`node`, installed from its bundle).

    A cluster node that does not start is reported through `out` and left to its
    supervisor; MahavishnuError when the mesh cannot come up at all.
    """
    policy = restart_policy(settings)
    if settings.server.cluster:
        stream_replicas(settings)  # refuse a cluster too small for the replicas before starting anything
        cluster = ClusterSupervisor(prepare_cluster(home, settings), policy, mesh=settings.mesh.name)
        await cluster.start()
        for problem in cluster.problems.values():
            out(f"warning: {problem}")
        return cluster
    if node is not None:
        prepare_node(home, settings, node)
        supervisor = Supervisor(NatsServer(home.node_conf, name=node.server_name), policy)
        await supervisor.start()
        return supervisor
    prepare(home, settings)
    supervisor = Supervisor(NatsServer(home.server_conf, name=settings.mesh.name), policy)
    await supervisor.start()
    return supervisor


async def run(
    home: Home,
    settings: Settings,
    *,
    index: tuple[str, ...] = (),
    out: Callable[[str], None] = print,
    node: NodeSpec | None = None,
) -> int:
    """Run the mesh until SIGINT/SIGTERM; 0 on a clean stop. MahavishnuError when it cannot come up.

    The signals are caught from the first moment: one that comes while the mesh is still
    starting stops it cleanly once started (its server child included), instead of killing
    `up` and leaving the server behind.

    `node`: this host's node of a cluster across hosts; only the control host's runs the
    mesh's services (ADR 0014), the others their server (mahavishnu.runtime.node).
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if node is not None and not node.services:
            from mahavishnu.runtime.node import run_node

            return await run_node(home, settings, node, out=out, stop=stop)
        return await _run(home, settings, index=index, out=out, stop=stop, node=node)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _run(
    home: Home,
    settings: Settings,
    *,
    index: tuple[str, ...],
    out: Callable[[str], None],
    stop: asyncio.Event,
    node: NodeSpec | None,
) -> int:
    policy = restart_policy(settings)
    supervisor = await start_servers(home, settings, out, node)
    watcher = asyncio.create_task(supervisor.watch(stop), name="supervisor")
    identity = home.control_identity(settings)
    registry = new_registry()  # one per process, served on /metrics by the probes
    nc: Client | None = None
    probes: ProbeServer | None = None
    service: ProjectionService | None = None
    stop_following = asyncio.Event()
    # The services up runs in its own process, each restarted by keep_running after a crash;
    # each returns once stop_following is set.
    services: list[asyncio.Task[None]] = []

    def supervise(name: str, run: Callable[[], Awaitable[None]]) -> None:
        services.append(asyncio.create_task(keep_running(name, run, policy), name=name))

    code: CodeIndexService | None = None
    system: Client | None = None
    api: ProbeServer | None = None
    bridge: bridging.MqttBridge | None = None
    shells: ShellBroker | None = None
    identities: IdentityThread | None = None
    provisioning: ProvisioningService | None = None
    try:
        nodes = len(supervisor.nodes) if isinstance(supervisor, ClusterSupervisor) else node.size if node else 1
        nc = await connect(identity, name="mahavishnu-up")
        system = await connect(home.system_identity(settings), name="mahavishnu-system-events")
        # EVENTS sources every registered edge site's stream (a site added later gets its
        # source from `site add` itself, without a restart).
        streams = sites.with_site_sources(streams_of(settings), sites.registered(home))
        store = EventStore(nc, streams, metrics=EventStoreMetrics(registry))
        if isinstance(supervisor, ClusterSupervisor) or node is not None:  # replicated: once the peers are there
            await create_streams(store, supervisor if isinstance(supervisor, ClusterSupervisor) else None)
        else:
            await store.ensure_streams()
        await ensure_update_buckets(store.js, replicas=stream_replicas(settings))
        if node is None:  # the control host's: the update metadata's keys live in its home (ADR 0016)
            # A mesh has its update trust from its first `up`, so every device enrolled gets its
            # root.json; what is not yet in the tuf bucket (or soon expires) is published now.
            await trust.ensure_initialised(home)
            await refresher.refresh_once(home, store)  # before devices connect; a failure is logged, not fatal
        # Every connection is audited from the first: the follower listens before any device
        # can be admitted (a fleet reconnecting after a restart is back within seconds).
        await connection_audit.follow(system, store.audit, operators.identifier(home))
        # Then devices connect through the identity service (the server's auth callout), so it
        # answers before the rest of up starts and before /ready says yes; on a thread of its
        # own, so a reconnecting fleet is answered without waiting for the rest of up.
        identities = IdentityThread(home, identity, home.system_identity(settings), servers=nodes)
        await asyncio.to_thread(identities.start)
        # Devices holding a claim ask for their certificates here; it reads the claims' events.
        provisioning = await start_provisioning(
            store, system, home, settings, servers=nodes, version=version("mahavishnu")
        )
        name = node.server_name if node is not None else socket.gethostname()
        await store.append(MeshStarted(node=name, version=version("mahavishnu"), url=identity.url, actor="control"))
        key = database_key(home.root, os.environ)
        service = ProjectionService(
            store,
            home.readmodels_dir,
            key,
            metrics=ProjectionMetrics(registry),
            keys=home.data_keys,
            campaign_metrics=CampaignMetrics(registry),
        )
        await service.start()
        supervise("projections", lambda: service.run(stop_following))
        supervise("site sources", lambda: sites.keep_sources(nc, home, stop_following))
        await control_requests.serve(nc, service)
        for location in index:
            out(await register_at_start(store, location))
        # The indexer's worker pool starts with the first commit to index, not here: a mesh
        # without repositories runs no worker processes.
        code = CodeIndexService(store, home.root, settings.code, metrics=CodeIndexMetrics(registry))
        supervise("code index", lambda: code.run(stop_following))
        models = ReadModels(home.readmodels_dir, key, store)
        admission = Admission()  # one fair share per caller across both doors
        queries = await start_query_service(
            nc,
            models,
            version=version("mahavishnu"),
            resolve=operators.resolver(home),
            audit=store.audit,
            admission=admission,
        )
        door: ArtifactDoor | None = None
        if settings.http.port:
            door = ArtifactDoor(
                store, links.load_key(home.artifact_links_key), home.artifact_cache_dir, http_url(settings)
            )
            api = http_api_server(
                home,
                settings,
                models,
                store.audit,
                admission=admission,
                ready=lambda: service is not None and service.caught_up,
                send_command=commands.sender(store),
                routes=[door.route()],
            )
            await api.start()
        fleet = CommandMetrics(registry)
        await command_latency.follow(nc, fleet)
        shells = await start_shell_broker(
            nc,
            resolve=operators.resolver(home),
            audit=store.audit,
            limits=shell_limits(settings),
            system=system,
            version=version("mahavishnu"),
            journal=SessionJournal(journal_path(home.root)),  # a crash's sessions end cleanly at the next start
        )
        devices = operators.devices_by_user(home)
        supervise("agents online", lambda: agents_online.follow(system, fleet, devices, stop_following))
        updates = UpdateMetrics(registry)
        supervise("update compliance", lambda: update_compliance.follow(models, updates, stop_following))
        supervise("update refusals", lambda: refusals.follow(store, stop_following))
        if node is None:  # the trust's online keys are the control host's (ADR 0016)
            supervise("update metadata refresh", lambda: refresher.keep_fresh(home, store, stop_following))
        if settings.mqtt.port:
            bridge = await bridging.open_bridge(
                store,
                home.mqtt_bridge_identity(settings),
                host=settings.mqtt.host,
                port=settings.mqtt.port,
                devices=lambda: mqtt.registered(home.root),
                metrics=bridging.MqttMetrics(registry),
                # the loopback cluster's nodes listen on consecutive ports; a node of a cluster
                # across hosts serves its own host's devices from its own listener
                listeners=len(supervisor.nodes) if isinstance(supervisor, ClusterSupervisor) else 1,
                replicas=stream_replicas(settings),
                fetch=door.fetch_for if door is not None else None,
            )
            relay = bridge
            supervise("mqtt bridge", lambda: relay.run(stop_following))
        # hosts registered with `device add-ssh`
        gateway = SshGateway(store, home.root, settings.ssh, metrics=SshMetrics(registry))
        supervise("ssh gateway", lambda: gateway.run(stop_following))
        campaigns = Orchestrator(  # fleet campaigns (ADR 0015)
            store, metrics=OrchestratorMetrics(registry), site_of=lambda device: sites.api_of(home, device)
        )
        supervise("campaigns", lambda: campaigns.run(stop_following))
        probes = await _start_probes(
            settings, registry, lambda: supervisor.running and nc is not None and nc.is_connected and service.caught_up
        )
        out(connection_help(identity, home))
        if bridge is not None:
            out(mqtt_help(home, settings))
        endpoints = supervisor.server.endpoints if isinstance(supervisor, Supervisor) else None
        if endpoints is not None and endpoints.leaf_port:  # edge sites connect to a single hub server
            leaf = f"{settings.leaf.host}:{endpoints.leaf_port}"
            out(f"  sites     leaf nodes on {leaf} (mahavishnu site add NAME)")
        if probes is not None:
            out(f"  probes    http://{settings.metrics.host}:{probes.port}/metrics /health /ready")
        if api is not None:
            out(f"  http      {api.scheme}://{settings.http.host}:{api.port}/ (dashboard, /api/..., /openapi.json)")
            if settings.http.tls:
                out(f"  http CA   {home.ca_dir / 'ca.pem'} (the HTTPS certificate's issuer: trust it, curl --cacert)")
        await until_signal(stop, watcher, *services)
        supervisor.stopping()  # from the signal on, a server's exit is part of the stop (see Supervisor.watch)
        # Each step drains what it took; a server stopped by the same signal makes it fail or wait,
        # and then it is closed undrained below (finally), as on an error.
        await _gracefully(queries.stop(), "the query service")
        await _gracefully(provisioning.stop(), "the provisioning service")
        await _gracefully(shells.stop(), "the terminal broker")
        stop_following.set()
        await asyncio.gather(*services)
        if supervisor.running and nc.is_connected:
            with contextlib.suppress(MahavishnuError, TimeoutError):
                await asyncio.wait_for(
                    store.append(MeshStopped(node=name, reason="signal", actor="control")), STOP_STEP_S
                )
        else:
            log.warning(
                "mesh.stopped is not recorded: nats-server was stopped by the same signal as up",
                extra={"to_do": "signal up alone (systemd: KillMode=mixed, as ops/systemd/mahavishnu.service)"},
            )
        out("mesh stopped")
        return 0
    except Exception as exc:
        # Still starting when the supervisor gave up on the server: the step that failed (a read
        # that timed out) is a symptom; the server that cannot be kept up is the reason to report.
        gave_up = watcher.exception() if watcher.done() and not watcher.cancelled() else None
        if gave_up is not None:
            raise gave_up from exc
        if stop.is_set():
            # Signalled while still starting, and the server with it (a group signal, systemd's
            # control-group stop): the step it left undone is the stop's doing, not an error.
            log.info("stopped while starting", extra={"left_undone": f"{type(exc).__name__}: {exc}"})
            out("mesh stopped")
            return 0
        raise
    finally:
        if shells is not None:  # stopping on an error: end the terminal sessions all the same (stop is idempotent)
            with contextlib.suppress(Exception):
                await shells.stop()
        if provisioning is not None:  # closed undrained: on an error, or after a stop step the server left undone
            await provisioning.close()
        stop_following.set()
        for task in services:
            # Stopping on an error (the server given up on, say), services that then gave up too
            # are its consequences, not the reason to report: retrieve what they raised, log it,
            # and let the first error be the last word.
            if not task.done():
                with contextlib.suppress(Exception):
                    await task
            elif not task.cancelled() and task.exception() is not None:
                log.debug("service ended with %r while up stopped", task.exception())
        if bridge is not None:
            await bridging.close_bridge(bridge)
        if code is not None:
            with contextlib.suppress(TimeoutError):  # niced workers on a loaded machine: do not hang the stop
                await asyncio.wait_for(code.close(), CODE_CLOSE_S)
        if service is not None:
            await service.close()
        if probes is not None:
            await probes.stop()
        if api is not None:
            await api.stop()
        if identities is not None:
            await asyncio.to_thread(identities.stop)
        await close_client(system)
        await close_client(nc)
        await supervisor.stop()
        if not watcher.done():
            await watcher


def shell_limits(settings: Settings) -> Limits:
    """The remote terminal's limits from [shell] (pure)."""
    shell = settings.shell
    return Limits(idle_s=shell.idle_timeout, max_s=shell.max_duration, owner_silence_s=shell.owner_timeout)


def http_api_server(
    home: Home,
    settings: Settings,
    models: ReadModels,
    audit: AuditTrail,
    *,
    ready: Callable[[], bool],
    admission: Admission | None = None,
    send_command: Send | None = None,
    routes: list[BaseRoute] | None = None,
) -> ProbeServer:
    """The HTTP query API and dashboard: over HTTPS with the mesh's server certificate unless [http] tls is off.

    With TLS an operator's client certificate authenticates like its bearer token does
    (both are checked against the CA registry and roles.json on every request).
    """
    tls = None
    if settings.http.tls:
        tls = ServerTLS(home.server_dir / "cert.pem", home.server_dir / "key.pem", client_ca=home.ca_dir / "ca.pem")
    authenticate = http_auth.authenticator(
        by_token=tokens.authenticator(home), by_certificate=operators.certificate_resolver(home)
    )
    return ProbeServer(
        settings.http.host,
        settings.http.port,
        new_registry(),
        ready=ready,
        routes=http_api.routes(
            models,
            authenticate=authenticate,
            audit=audit,
            admission=admission,
            client_certificates=tls is not None,
            send_command=send_command,
        )
        + list(routes or ()),
        tls=tls,
    )


def http_url(settings: Settings) -> str:
    """Where devices reach the HTTP door: its address, or loopback when it listens everywhere (pure)."""
    host = settings.http.host
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if settings.http.tls else 'http'}://{host}:{settings.http.port}"


async def _start_probes(
    settings: Settings, registry: CollectorRegistry, ready: Callable[[], bool]
) -> ProbeServer | None:
    if not settings.metrics.port:
        return None
    probes = ProbeServer(settings.metrics.host, settings.metrics.port, registry, ready=ready)
    await probes.start()
    return probes


async def close_client(client: Client | None) -> None:
    """Close a connection; one to a server that is gone (up is giving up on it) fails to flush: that is fine."""
    if client is not None and not client.is_closed:
        with contextlib.suppress(OSError):
            await client.close()


async def _gracefully(step: Awaitable[None], what: str) -> None:
    """Await one step of a clean stop for at most STOP_STEP_S; a server gone meanwhile is logged, not raised."""
    try:
        await asyncio.wait_for(step, STOP_STEP_S)
    except (TimeoutError, nats.errors.Error, MahavishnuError) as exc:
        log.info("%s stopped undrained: the server went away during the stop (%r)", what, exc)


async def until_signal(stop: asyncio.Event, *children: asyncio.Task[None]) -> None:
    """Wait until `stop` is set (SIGINT or SIGTERM); GaveUp (ClusterError) propagates when a child (the server or
    cluster, a service) could not be kept up."""
    stopper = asyncio.create_task(stop.wait(), name="stop-signal")
    try:
        done, _ = await asyncio.wait({*children, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for child in done - {stopper}:
            child.result()  # raises GaveUp; none of them ends cleanly before a signal
    finally:
        stopper.cancel()
