"""Edge sites without processes: the rendered configurations, the users, the sources, the link reports."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from certs import IssuedRecord
from core.config import load_config
from core.streams import default_streams
from mahavishnu.control.permissions import LEAF_DENIED, site_mappings, users_for
from mahavishnu.runtime.home import Home
from mahavishnu.runtime.natsconf import render_users
from mahavishnu.runtime.provisioning import leaf_listener
from mahavishnu.sites import cutoff
from mahavishnu.sites import hub as sites
from mahavishnu.sites.leafconf import LeafConfig
from mahavishnu.sites.runner import (
    DOWN_GRACE_S,
    UP_GRACE_S,
    LinkState,
    link_message,
    link_state,
    site_streams,
    to_report,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)
SETTINGS = load_config(None, env={"MAHAVISHNU_LEAF__PORT": "7422"})


def _record(identity: str, kind: str, serial: int, *, revoked: bool = False) -> IssuedRecord:
    return IssuedRecord(
        identity=identity,
        kind=kind,
        serial=serial,
        not_after=NOW + timedelta(days=1),
        fingerprint_sha256="",
        revoked=revoked,
    )


def _site(**changes: object) -> sites.Site:
    return dataclasses.replace(sites.new_site("site-a", SETTINGS, hosts=["edge.example"]), **changes)  # type: ignore[arg-type]


def test_the_leaf_config_has_its_own_domain_and_a_link_without_mesh_subjects(tmp_path: Path) -> None:
    config = LeafConfig(
        server_name="site-site-a",
        domain="site-a",
        host="0.0.0.0",
        port=4222,
        monitor_port=-1,
        hub_urls=("tls://hub.example:7422",),
        cert_file=tmp_path / "cert.pem",
        key_file=tmp_path / "key.pem",
        ca_file=tmp_path / "ca.pem",
        store_dir=tmp_path / "jetstream",
        key_include="jetstream-key.conf",
        users_include="users.conf",
        pid_file=tmp_path / "leaf.pid",
    )
    text = config.render()
    assert 'domain: "site-a"' in text
    assert 'urls: ["tls://hub.example:7422"]' in text
    assert "verify_and_map: true" in text
    for denied in LEAF_DENIED:
        assert text.count(f'"{denied}"') == 2  # deny_imports and deny_exports
    with pytest.raises(ValueError, match="absolute"):
        dataclasses.replace(config, store_dir=Path("jetstream")).render()
    with pytest.raises(ValueError, match="hub URL"):
        dataclasses.replace(config, hub_urls=()).render()


def test_the_hub_listens_for_leaf_nodes_only_when_asked(tmp_path: Path) -> None:
    home = Home(tmp_path)
    assert leaf_listener(home, load_config(None, env={})) is None
    listener = leaf_listener(home, SETTINGS)
    assert listener is not None
    text = listener.render()
    assert 'listen: "127.0.0.1:7422"' in text and "verify_and_map: true" in text and "no_advertise: true" in text


def test_a_site_may_only_link_and_its_link_carries_no_mesh_subjects() -> None:
    mesh, ops, system = users_for([_record("site-a", "site", 0xAB)], NOW)
    assert (ops, system) == ((), ())
    rendered = render_users(mesh)
    assert '"mahavishnu:cert:ab"' in rendered
    assert 'allowed_connection_types: ["LEAFNODE"]' in rendered
    assert (
        'publish: { deny: ["mesh.evt.>", "mesh.cmd.>", "mesh.audit.>", "mesh.campaign.>", "mesh.q.>", '
        '"mesh.provision.>", "$JS.API.>", "mesh.pty.ctl.>", "mesh.pty.in.>", "mesh.shell.>"] }'
    ) in rendered  # nor terminal control or keystrokes for the hub's devices, nor claims' requests
    subscribe = (
        'deny: ["mesh.evt.>", "mesh.cmd.>", "mesh.audit.>", "mesh.campaign.>", "mesh.q.>", "mesh.provision.>", '
        '"$JS.API.>"] }'
    )
    assert subscribe in rendered


def test_a_sites_server_knows_itself_and_its_own_live_devices_only() -> None:
    site = _site(devices=("dev-a", "dev-b"))
    records = [
        _record("site-a", "site", 1),
        _record("dev-a", "device", 2),
        _record("dev-b", "device", 3, revoked=True),
        _record("dev-c", "device", 4),  # a device of the hub, or of another site
        _record("site-b", "site", 5),
    ]
    users = sites.site_users(site, records, NOW)
    assert [u.name for u in users] == ["mahavishnu:cert:1", "mahavishnu:cert:2"]
    assert users[0].publish_allow is None  # the site's own runner creates its streams
    assert users[1].publish_allow is not None and "mesh.evt.device.dev-a.telemetry" in users[1].publish_allow


def test_new_sites_take_the_hubs_leaf_urls_and_refuse_the_mesh_name() -> None:
    site = sites.new_site("site-a", SETTINGS, hosts=["edge.example"])
    assert site.hub_urls == ("tls://localhost:7422", "tls://127.0.0.1:7422")
    assert site.hosts == ("edge.example", "localhost", "127.0.0.1")
    assert site.device_url == "tls://edge.example:4222" and site.api == "$JS.site-a.API"
    assert sites.Site.from_json(site.to_json(), Path("site.json")) == site
    with pytest.raises(sites.SiteError, match="like the mesh"):
        sites.new_site("mahavishnu", SETTINGS)
    with pytest.raises(sites.SiteError, match=r"\[leaf\] port = 7422"):
        sites.new_site("site-a", load_config(None, env={}))


def test_events_sources_every_site_and_nothing_else_changes() -> None:
    streams = sites.with_site_sources(default_streams(), [_site(), _site(name="site-b", domain="site-b")])
    events = next(s for s in streams if s.name == "EVENTS")
    assert events.as_config()["sources"] == [
        {"name": "EVENTS", "external": {"api": "$JS.site-a.API", "deliver": ""}},
        {"name": "EVENTS", "external": {"api": "$JS.site-b.API", "deliver": ""}},
    ]
    assert [s for s in streams if s.name != "EVENTS"] == [s for s in default_streams() if s.name != "EVENTS"]
    assert sites.with_site_sources(default_streams(), []) == default_streams()


def test_a_source_without_a_consumer_is_detached() -> None:
    a, b, c = _site(), _site(name="site-b", domain="site-b"), _site(name="site-c", domain="site-c")
    info = {
        "sources": [
            {"name": "EVENTS", "external": {"api": a.api}, "active": 1_000_000},
            {"name": "EVENTS", "external": {"api": b.api}, "active": -1},
        ]
    }
    assert sites.detached(info, [a, b, c]) == [b, c]  # c is not a source at all yet


def test_the_link_report_names_the_hub_and_does_not_cry_wolf_at_start() -> None:
    site = _site(hub_urls=("tls://hub.example:7422",))
    lines = ['[ERR] Error trying to connect as leafnode to remote server "hub.example:7422" (attempt 1): dial tcp']
    down = link_state({"leafnodes": 0}, lines)
    assert not down.up and down.detail.startswith("Error trying to connect as leafnode")
    assert "cannot reach the hub at tls://hub.example:7422 (Error trying" in link_message(site, down)
    assert link_state({"leafnodes": 1}, lines) == LinkState(True)
    quiet = LinkState(False)
    assert not to_report(None, quiet, 0.5, 0.0)  # starting: the link takes a moment
    assert to_report(None, quiet, DOWN_GRACE_S, 0.0)
    assert to_report(None, down, 0.0, 0.0)  # the server said why: at once
    assert not to_report(True, LinkState(True), 0.0, UP_GRACE_S)


def test_a_link_is_reported_up_once_seen_on_two_looks_not_in_a_refused_links_moment() -> None:
    up = LinkState(True)
    assert not to_report(False, up, 0.0, 0.0)  # first seen: it may be a link the hub is refusing
    assert not to_report(None, up, 0.0, UP_GRACE_S / 2)
    assert to_report(False, up, 0.0, UP_GRACE_S)
    assert to_report(None, up, 0.0, UP_GRACE_S * 3)


def test_a_site_is_left_behind_unless_the_hub_copied_all_it_holds() -> None:
    site = _site()
    info = {"sources": [{"name": "EVENTS", "external": {"api": site.api}, "seq": 7}]}
    assert sites.copied_of(info, site) == 7
    assert sites.copied_of({"sources": []}, site) is None
    assert sites.left_at_site(7, 7, site) == ""
    assert "not yet copied 2 event(s)" in sites.left_at_site(7, 9, site)
    assert "does not answer" in sites.left_at_site(7, None, site)
    assert sites.left_at_site(None, None, site) == ""  # never sourced: nothing was due at the hub


def test_a_removed_sites_links_are_found_by_its_servers_name_once_every_server_reloaded() -> None:
    site = _site()
    answers = [
        {
            "server": {"id": "NA"},
            "data": {
                "leafs": [
                    {"id": 7, "name": "site-site-a", "account": "MESH"},
                    {"id": 8, "name": "site-site-b", "account": "MESH"},
                    {"id": 9, "name": "site-site-a", "account": "OTHER"},
                ]
            },
        },
        {"server": {"id": "NB"}, "data": {"leafs": []}},
    ]
    assert cutoff.links_of(answers, site) == [("NA", 7)]
    before = cutoff.load_times([{"server": {"id": "NA"}, "data": {"config_load_time": "t1"}}])
    assert before == {"NA": "t1"}
    assert not cutoff.reloaded(before, {"NA": "t1"})
    assert not cutoff.reloaded(before, {})  # a server that did not answer has not been seen to reload
    assert cutoff.reloaded(before, {"NA": "t2", "NB": "t0"})


def test_a_sites_streams_keep_its_retention_and_source_the_hubs_consumer_of_its_commands() -> None:
    site = _site(devices=("dev-a", "dev-b"), retention_s=3600.0)
    streams = {s.name: s.as_config() for s in site_streams(site)}
    assert sorted(streams) == ["COMMANDS", "EVENTS"]
    assert streams["EVENTS"]["max_age"] == streams["COMMANDS"]["max_age"] == 3600 * 10**9
    assert "sources" not in streams["EVENTS"]
    assert streams["COMMANDS"]["sources"] == [
        {
            "name": "COMMANDS",
            "consumer": {"name": "site-site-a", "deliver_subject": "mesh.site.site-a.commands"},
            "external": {"api": "$JS.HUB.API", "deliver": ""},
        }
    ]
    assert "sources" not in {s.name: s.as_config() for s in site_streams(_site())}["COMMANDS"]  # no devices yet
    assert sites.Site.from_json({**site.to_json(), "retention_s": 60.0}, Path("x")).retention_s == 60.0
    old = {k: v for k, v in site.to_json().items() if k != "retention_s"}  # a bundle from before retention
    assert sites.Site.from_json(old, Path("x")).retention_s == SETTINGS.leaf.site_retention == 30 * 86400.0


def test_the_hub_delivers_a_site_its_own_devices_commands_and_nothing_else_reaches_it() -> None:
    site = _site(devices=("dev-a", "dev-b"))
    consumer = sites.commands_consumer(site)
    assert consumer is not None
    assert consumer["filter_subjects"] == ["mesh.cmd.dev-a.>", "mesh.cmd.dev-b.>"]
    assert consumer["deliver_subject"] == "mesh.site.site-a.commands" and consumer["ack_policy"] == "flow_control"
    assert sites.commands_consumer(_site()) is None  # without devices: no filter would mean every command
    assert sites.consumer_matches({"config": {"filter_subjects": ["mesh.cmd.dev-b.>", "mesh.cmd.dev-a.>"]}}, consumer)
    assert not sites.consumer_matches({"config": {"filter_subjects": ["mesh.cmd.dev-a.>"]}}, consumer)
    assert not sites.consumer_matches({"error": {"code": 404}}, consumer)
    assert sites.consumer_matches({"error": {"code": 404}}, None)

    records = [_record("site-a", "site", 1), _record("site-b", "site", 2), _record("site-c", "site", 3, revoked=True)]
    assert site_mappings(records, NOW).splitlines() == [
        "mappings: {",
        '    "$JS.HUB.API.CONSUMER.RESET.COMMANDS.site-site-a": "$JS.API.CONSUMER.RESET.COMMANDS.site-site-a"',
        '    "$JS.HUB.API.CONSUMER.RESET.COMMANDS.site-site-b": "$JS.API.CONSUMER.RESET.COMMANDS.site-site-b"',
        "}",
    ]
    assert site_mappings([], NOW).startswith("#")
    mesh, _, _ = users_for(records, NOW)
    a, b = mesh
    # site-a hears only what the hub sends it: not what it delivers to site-b, even by a wildcard
    assert a.subscribe_allow == ("mesh.site.site-a.>", "$JS.site-a.API.>", "$JSC.R.>", "$JS.FC.>")
    assert b.subscribe_allow is not None and b.subscribe_allow[0] == "mesh.site.site-b.>"
    assert 'allow: ["mesh.site.site-a.>", "$JS.site-a.API.>", "$JSC.R.>", "$JS.FC.>"]' in render_users(mesh)
