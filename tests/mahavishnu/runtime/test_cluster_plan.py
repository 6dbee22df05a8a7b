"""The plan of a loopback cluster (pure), the configuration each node gets, and the settings that describe it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from core.config import ConfigError, load_config
from core.store import Identity
from mahavishnu.runtime.cluster import prepare_cluster, start_failure
from mahavishnu.runtime.clusterplan import ClusterPlanError, plan_nodes, stream_replicas
from mahavishnu.runtime.home import Home
from mahavishnu.runtime.server import nats_server_binary
from mahavishnu.runtime.streams import streams_of
from mahavishnu.runtime.up import connection_help


def _settings(**env: str):  # type: ignore[no-untyped-def]
    return load_config(None, env={f"MAHAVISHNU_{k.upper()}": v for k, v in env.items()})


def test_a_single_server_has_no_nodes_and_keeps_its_replicas() -> None:
    settings = _settings()
    assert plan_nodes(Path("/h"), settings) == ()
    assert stream_replicas(settings) == 1
    assert Home(Path("/h")).control_identity(settings).servers == ("tls://127.0.0.1:4222",)


def test_node_k_takes_the_kth_port_of_each_run() -> None:
    settings = _settings(server__cluster="3", server__port="5000", server__cluster_port="6000")
    nodes = plan_nodes(Path("/h"), settings)
    assert [(n.name, n.server_name, n.client_port, n.route_port, n.monitor_port) for n in nodes] == [
        ("n1", "mahavishnu-n1", 5000, 6000, 8222),
        ("n2", "mahavishnu-n2", 5001, 6001, 8223),
        ("n3", "mahavishnu-n3", 5002, 6002, 8224),
    ]
    assert [n.store_dir for n in nodes] == [Path("/h/cluster/n1"), Path("/h/cluster/n2"), Path("/h/cluster/n3")]
    assert nodes[1].config == Path("/h/nats/cluster-n2.conf")  # beside the shared includes


def test_a_cluster_identity_lists_every_node_and_the_help_prints_them() -> None:
    settings = _settings(server__cluster="3", server__port="5000", server__cluster_port="6000")
    home = Home(Path("/h"))
    identity = home.control_identity(settings)
    assert identity.servers == ("tls://127.0.0.1:5000", "tls://127.0.0.1:5001", "tls://127.0.0.1:5002")
    help_text = connection_help(identity, home)
    assert "mesh is up: tls://127.0.0.1:5000, tls://127.0.0.1:5001, tls://127.0.0.1:5002" in help_text
    assert "--server tls://127.0.0.1:5000,tls://127.0.0.1:5001,tls://127.0.0.1:5002 " in help_text
    # A test that names the port of one server gets that server only.
    assert home.control_identity(settings, port=7000).servers == ("tls://127.0.0.1:7000",)


def test_a_single_server_help_is_unchanged() -> None:
    identity = Identity("tls://127.0.0.1:4222", Path("/c/ca.pem"), Path("/c/cert.pem"), Path("/c/key.pem"))
    help_text = connection_help(identity, Home(Path("/h")))
    assert help_text.splitlines()[0] == "mesh is up: tls://127.0.0.1:4222"
    assert "nats --server tls://127.0.0.1:4222 --tlsca" in help_text


def test_cluster_streams_are_replicated_three_times() -> None:
    assert stream_replicas(_settings(server__cluster="3")) == 3
    assert stream_replicas(_settings(server__cluster="5", jetstream__replicas="5")) == 5
    assert {spec.replicas for spec in streams_of(_settings(server__cluster="3"))} == {3}
    with pytest.raises(ClusterPlanError, match="replicas = 5 needs at least 5 nodes"):
        stream_replicas(_settings(server__cluster="3", jetstream__replicas="5"))


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"server__cluster": "2"}, "server.cluster must be 0 (one server), 3 or 5"),
        ({"server__cluster": "3", "server__cluster_port": "4223"}, "overlap for 3 nodes"),
        ({"server__cluster": "3", "server__port": "65534"}, "server.port (65534) leaves no room for 3"),
        ({"server__cluster_port": "0"}, "server.cluster_port must be between 1 and 65535"),
    ],
)
def test_cluster_settings_that_cannot_work_are_refused(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError) as refused:
        _settings(**env)
    assert problem in str(refused.value)


def test_every_node_config_routes_to_the_others_over_verified_tls_and_the_server_accepts_it(tmp_path: Path) -> None:
    settings = _settings(server__cluster="3", server__port="5000", server__cluster_port="6000")
    home = Home(tmp_path / "home")
    nodes = prepare_cluster(home, settings)

    texts = [node.config.read_text() for node in nodes]
    for node, text in zip(nodes, texts, strict=True):
        cluster = text[text.index("cluster {") :]
        assert f'server_name: "mahavishnu-{node.name}"' in text
        assert f'listen: "127.0.0.1:{node.client_port}"' in text
        assert f'listen: "127.0.0.1:{node.route_port}"' in cluster
        assert "verify: true" in cluster and str(home.ca_dir / "ca.pem") in cluster
        routes = {f'"tls://127.0.0.1:{peer.route_port}"' for peer in nodes if peer is not node}
        assert all(route in cluster for route in routes)
        assert f'"tls://127.0.0.1:{node.route_port}"' not in cluster  # never a route to itself
        assert f'store_dir: "{node.store_dir}"' in text
        assert 'include "jetstream-key.conf"' in text  # one encryption key for every node
        assert "domain:" not in text  # one cluster, one JetStream domain: none set
        checked = subprocess.run(
            [str(nats_server_binary()), "-c", str(node.config), "-t"], capture_output=True, text=True, timeout=30
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
    # The single server's configuration stays as it was: no cluster block.
    assert "cluster {" not in home.server_conf.read_text()


def test_a_node_that_failed_is_named_with_what_to_do() -> None:
    node = plan_nodes(Path("/h"), _settings(server__cluster="3", server__port="5000", server__cluster_port="6000"))[1]
    message = start_failure(node, "the port is already in use (bind: address already in use): stop whatever holds it")
    assert message.startswith("cluster node n2 (mahavishnu-n2: client port 5001, route port 6001, store /h/cluster/n2)")
    assert "free those ports or move the cluster's with [server] port and cluster_port" in message
    assert "the other nodes keep running" in message
