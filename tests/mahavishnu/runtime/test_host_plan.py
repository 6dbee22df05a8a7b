"""The plan of a cluster across hosts (pure): hosts, nodes, their settings and configuration, certificate names."""

from __future__ import annotations

import tomllib
from pathlib import Path

import msgspec
import pytest

from core.config import load_config
from mahavishnu.runtime.clusterplan import ClusterPlanError
from mahavishnu.runtime.hostplan import (
    NodeSpec,
    certificate_problem,
    host_config,
    node_settings,
    parse_hosts,
    plan_hosts,
    settings_toml,
)
from mahavishnu.runtime.natsconf import ServerConfig

SETTINGS = load_config(None, env={"MAHAVISHNU_SERVER__PORT": "14222", "MAHAVISHNU_SERVER__CLUSTER_PORT": "16222"})


def test_hosts_are_three_or_five_distinct_names() -> None:
    assert parse_hosts("a.example, b.example,10.0.0.3") == ("a.example", "b.example", "10.0.0.3")
    for wrong, said in (("a,b", "3 or 5"), ("a,b,a", "twice"), ("a,,c", "separated by commas"), ("a,b c,d", "comma")):
        with pytest.raises(ClusterPlanError, match=said):
            parse_hosts(wrong)


def test_every_node_routes_to_every_other_on_the_same_ports_and_the_first_runs_the_services() -> None:
    nodes = plan_hosts(("a", "b", "fd00::3"), SETTINGS, "f" * 64)
    assert [n.server_name for n in nodes] == ["mahavishnu-n1", "mahavishnu-n2", "mahavishnu-n3"]
    assert nodes[0].peers == ("b:16222", "[fd00::3]:16222")
    assert nodes[2].url == "tls://[fd00::3]:14222" and nodes[1].url == "tls://b:14222"
    assert [n.services for n in nodes] == [True, False, False]
    assert msgspec.json.decode(msgspec.json.encode(nodes[1]), type=NodeSpec) == nodes[1]  # node.json round trip


def test_a_nodes_settings_take_its_host_and_ports_and_three_replicas() -> None:
    node = plan_hosts(("a", "b", "c"), SETTINGS, "f" * 64)[1]
    settings = node_settings(load_config(None, env={}), node)
    assert (settings.server.host, settings.server.port, settings.server.cluster_port) == ("b", 14222, 16222)
    assert settings.server.cluster == 0 and settings.jetstream.replicas == 3
    other = load_config(None, env={"MAHAVISHNU_MESH__NAME": "other"})
    with pytest.raises(ClusterPlanError, match="mesh 'mahavishnu'"):
        node_settings(other, node)
    toml = tomllib.loads(settings_toml(node))  # what the bundle's mahavishnu.toml says, read back
    assert toml == {
        "mesh": {"name": "mahavishnu"},
        "server": {"host": "b", "port": 14222, "cluster_port": 16222},
        "jetstream": {"replicas": 3},
    }


def test_a_nodes_configuration_listens_on_its_host_and_dials_its_peers(tmp_path: Path) -> None:
    node = plan_hosts(("a", "b", "c"), SETTINGS, "f" * 64)[2]
    base = ServerConfig(
        server_name="mahavishnu",
        host="127.0.0.1",
        port=14222,
        monitor_port=0,
        server_cert=tmp_path / "node/cert.pem",
        server_key=tmp_path / "node/key.pem",
        ca_file=tmp_path / "ca/ca.pem",
        store_dir=tmp_path / "jetstream",
        key_include="jetstream-key.conf",
        users_include="users.conf",
        operators_include="operators.conf",
        system_include="system.conf",
        pid_file=tmp_path / "server.pid",
    )
    text = host_config(base, node).render()
    assert "mahavishnu-n3" in text
    assert 'listen: "c:16222"' in text and '"tls://a:16222"' in text and '"tls://b:16222"' in text


def test_a_certificate_serves_the_node_only_when_it_names_its_host() -> None:
    node = plan_hosts(("node-a.example", "10.0.0.2", "fd00::3"), SETTINGS, "f" * 64)
    assert certificate_problem(node[0], ("NODE-A.example.",)) is None
    assert certificate_problem(node[2], ("fd00:0::3",)) is None
    problem = certificate_problem(node[1], ("10.0.0.3", "b"))
    assert problem == "its certificate names 10.0.0.3, b, not the node's host 10.0.0.2"
