"""`up --cluster N`: N nats-server nodes on this machine, each supervised like the single server.

The plan (names, ports, files, configuration) is mahavishnu.runtime.clusterplan's, pure; this
module writes the nodes' files, starts them, keeps each alive with its own Supervisor
(restart with backoff, give up loudly) and creates the replicated streams once the
cluster can hold them.

A node that does not start or gives up is reported by name with its reason and what to
do, and the others keep running: a cluster of three serves with two. Only when fewer than
a majority run is the cluster lost, and then `up` stops with every node's reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from core.config import Settings
from core.errors import MahavishnuError, StoreError
from core.store import EventStore
from mahavishnu.runtime.clusterplan import Node, node_config, plan_nodes
from mahavishnu.runtime.home import Home, write_private
from mahavishnu.runtime.provisioning import prepare
from mahavishnu.runtime.server import NatsServer, ServerStartError
from mahavishnu.runtime.supervisor import GaveUp, RestartPolicy, Supervisor

log = logging.getLogger("mahavishnu.cluster")

STREAMS_TIMEOUT_S = 60.0  # a fresh cluster elects its JetStream leader in seconds; a node restarting takes longer


class ClusterError(MahavishnuError):
    """The cluster could not come up or lost its majority; the message names each node's reason."""


def prepare_cluster(home: Home, settings: Settings) -> tuple[Node, ...]:
    """Create what is missing in the state directory and write every node's configuration.

    The nodes share the CA, the server certificate, the JetStream key and the users
    includes with the single server (prepare), and differ in names, ports and stores.
    """
    base = prepare(home, settings)
    nodes = plan_nodes(home.root, settings)
    for node in nodes:
        node.store_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(node.config, node_config(base, node, nodes, settings).render())
    return nodes


def start_failure(node: Node, reason: str) -> str:
    """What to say about a node that did not start: which node, why, what to do, and that the rest runs (pure)."""
    return (
        f"{node.describe()} did not start: {reason}; node {node.index} uses [server] port + {node.index - 1} "
        f"and cluster_port + {node.index - 1}, so free those ports or move the cluster's with [server] port "
        "and cluster_port. Its supervisor keeps retrying with backoff; the other nodes keep running"
    )


def majority(size: int) -> int:
    return size // 2 + 1


class ClusterSupervisor:
    """Starts the nodes, watches each with a Supervisor, and stops them; see the module docstring."""

    def __init__(self, nodes: tuple[Node, ...], policy: RestartPolicy, *, mesh: str) -> None:
        self.nodes = nodes
        self.servers = {node.name: NatsServer(node.config, name=f"{mesh}-{node.name}") for node in nodes}
        self.supervisors = {name: Supervisor(server, policy) for name, server in self.servers.items()}
        self.problems: dict[str, str] = {}  # node name -> why it is not running (a failed start or giving up)

    @property
    def running(self) -> bool:
        """True while a majority of the nodes runs: what the cluster needs to accept writes."""
        return sum(server.running for server in self.servers.values()) >= majority(len(self.nodes))

    def running_nodes(self) -> list[Node]:
        return [node for node in self.nodes if self.servers[node.name].running]

    async def start(self) -> None:
        """Start every node at once (each waits for its routes to the others).

        A node that fails is logged with its reason and left to its supervisor's retries;
        ClusterError when fewer than a majority start (the ones that did are stopped).
        """
        results = await asyncio.gather(
            *(asyncio.to_thread(self.servers[node.name].start) for node in self.nodes), return_exceptions=True
        )
        for node, result in zip(self.nodes, results, strict=True):
            if isinstance(result, ServerStartError):
                self.problems[node.name] = start_failure(node, str(result))
                log.error("cluster node did not start", extra={"node": node.name, "reason": self.problems[node.name]})
            elif isinstance(result, BaseException):
                raise result
        if len(self.nodes) - len(self.problems) < majority(len(self.nodes)):
            await self.stop()
            raise ClusterError(
                f"only {len(self.nodes) - len(self.problems)} of {len(self.nodes)} cluster nodes started, "
                f"a cluster needs {majority(len(self.nodes))}: " + " | ".join(self.problems.values())
            )

    async def watch(self, until: asyncio.Event | None = None) -> None:
        """Keep every node up; returns once stopping (or `until` is set, as Supervisor.watch), raises
        ClusterError when a majority has given up."""
        watchers = {
            asyncio.create_task(supervisor.watch(until), name=f"supervisor-{name}"): name
            for name, supervisor in self.supervisors.items()
        }
        try:
            pending = set(watchers)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    try:
                        task.result()
                    except GaveUp as exc:
                        node = next(n for n in self.nodes if n.name == watchers[task])
                        self.problems[node.name] = f"{node.describe()} gave up: {exc}"
                        log.critical(
                            "cluster node gave up and stays down; the other nodes keep running",
                            extra={
                                "node": node.name,
                                "reason": self.problems[node.name],
                                "to_do": "fix its cause and restart `mahavishnu up` to bring it back",
                            },
                        )
                given_up = sum(1 for problem in self.problems.values() if " gave up: " in problem)
                if len(self.nodes) - given_up < majority(len(self.nodes)):
                    raise ClusterError(
                        f"the cluster lost its majority ({given_up} of {len(self.nodes)} nodes gave up): "
                        + " | ".join(self.problems.values())
                    )
        finally:
            for task in watchers:
                task.cancel()
            for task in watchers:
                with contextlib.suppress(asyncio.CancelledError, GaveUp):
                    await task

    def stopping(self) -> None:
        """From now on the nodes' exits are expected."""
        for supervisor in self.supervisors.values():
            supervisor.stopping()

    async def stop(self) -> None:
        await asyncio.gather(*(supervisor.stop() for supervisor in self.supervisors.values()))

    def down_report(self) -> str:
        """The nodes not running now and why, for an error message (empty when all run)."""
        down = [n for n in self.nodes if not self.servers[n.name].running]
        return "; ".join(self.problems.get(n.name, f"{n.describe()} is not running (restarting)") for n in down)


async def create_streams(
    store: EventStore, cluster: ClusterSupervisor | None, *, timeout: float = STREAMS_TIMEOUT_S
) -> None:
    """Create or update the streams once the cluster can hold them.

    A fresh cluster answers JetStream requests only after it has elected its metadata
    leader, and an R3 stream needs three running nodes: until `timeout`, refusals and
    silence are retried. ClusterError then, naming the nodes of `cluster` that are down
    (None: a cluster across hosts, whose other nodes this process does not run).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            await store.ensure_streams()
            return
        except StoreError as exc:
            if time.monotonic() >= deadline:
                down = cluster.down_report() if cluster is not None else "are the other hosts' nodes up?"
                raise ClusterError(
                    f"the cluster did not accept the streams within {timeout:g} s: {exc}"
                    + (f"; {down}" if down else "")
                ) from exc
            log.info("waiting for the cluster to accept the streams", extra={"reason": str(exc)})
        await asyncio.sleep(0.25)  # retry interval while the cluster elects its leaders, bounded by the deadline
