"""NATS subjects of the mesh, built and checked in one place (pure).

Subjects name the aggregate an event belongs to, so a consumer can filter on one
device or one repository and optimistic concurrency can be checked per aggregate:

    mesh.evt.mesh.<what>                  the mesh itself (started, stopped)
    mesh.evt.device.<device>.<what>       a device's events
    mesh.evt.repo.<repo>.<what>           a repository's events
    mesh.evt.claim.<claim>.<what>         a fleet provisioning claim's events
    mesh.evt.artifact.<name>.<what>       a software artifact's events (added, removed)
    mesh.evt.trust.<role>.<what>          the update metadata's events (a TUF role's file published)
    mesh.provision.<claim>                a device asks for its certificate with a claim
    mesh.cmd.<device>.<command-id>        a command for a device
    mesh.site.<site>.commands             the hub delivering an edge site's devices' commands to it
    mesh.audit.<category>.<actor>         the audit trail
    mesh.campaign.<campaign>.<what>       a fleet campaign's own events (created, wave opened...)
    mesh.campaign.<campaign>.device.<id>  one device's execution in a campaign (notified, its outcome)
"""

from __future__ import annotations

import functools
import re

EVENTS_PREFIX = "mesh.evt"
COMMANDS_PREFIX = "mesh.cmd"
AUDIT_PREFIX = "mesh.audit"
CAMPAIGNS_PREFIX = "mesh.campaign"
QUERY_PREFIX = "mesh.q"  # the query services: mesh.q.<read model>.<query>
PROVISION_PREFIX = "mesh.provision"  # the provisioning service: mesh.provision.<claim>
# Where an edge site's COMMANDS stream finds the hub's JetStream API to source its devices'
# commands across the leaf link. The hub maps only each site's "reset my consumer" from it
# onto its own API (docs/adr/0013); upper case, so no site's JetStream domain (a site name:
# lower case) can ever be named like it.
HUB_COMMANDS_API = "$JS.HUB.API"
SITES_PREFIX = "mesh.site"  # mesh.site.<site>.commands: the hub delivers a site's commands there

# A token is one dot-free, wildcard-free, whitespace-free piece of a subject.
_TOKEN = re.compile(r"[A-Za-z0-9_\-:@+=~]{1,128}")


@functools.lru_cache(maxsize=4096)  # the same device ids and names come back all the time
def token(value: str, *, what: str = "subject token") -> str:
    """Return `value` if it can be one subject token; ValueError saying why otherwise."""
    if not _TOKEN.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} cannot be used in a NATS subject: use 1-128 letters, digits or _-:@+=~ "
            "(no dots, spaces or wildcards)"
        )
    return value


def mesh_event(what: str) -> str:
    return f"{EVENTS_PREFIX}.mesh.{token(what)}"


def device_event(device_id: str, what: str) -> str:
    return f"{EVENTS_PREFIX}.device.{token(device_id, what='device id')}.{token(what)}"


# Every device's reports on its commands (accepted, running, each ending) and the cancels the
# control side records: what the commands read model, the campaign orchestrator, command
# latency and the audit of refused updates each follow.
COMMAND_REPORTS = f"{EVENTS_PREFIX}.device.*.command"


def device_events(device_id: str) -> str:
    """The filter for every event of one device."""
    return f"{EVENTS_PREFIX}.device.{token(device_id, what='device id')}.>"


def repo_event(repo: str, what: str) -> str:
    return f"{EVENTS_PREFIX}.repo.{token(repo, what='repository name')}.{token(what)}"


def claim_event(claim_id: str, what: str) -> str:
    return f"{EVENTS_PREFIX}.claim.{token(claim_id, what='claim id')}.{token(what)}"


def claim_events(claim_id: str | None = None) -> str:
    """The filter for one claim's events, or every claim's."""
    if claim_id is None:
        return f"{EVENTS_PREFIX}.claim.>"
    return f"{EVENTS_PREFIX}.claim.{token(claim_id, what='claim id')}.>"


def artifact_event(name: str, what: str) -> str:
    return f"{EVENTS_PREFIX}.artifact.{token(name, what='artifact name')}.{token(what)}"


def trust_event(role: str, what: str) -> str:
    return f"{EVENTS_PREFIX}.trust.{token(role, what='TUF role')}.{token(what)}"


def campaign_event(campaign_id: str, what: str) -> str:
    return f"{CAMPAIGNS_PREFIX}.{token(campaign_id, what='campaign id')}.{token(what)}"


def campaign_execution(campaign_id: str, device_id: str) -> str:
    """Where one device's execution in a campaign is recorded: its last step is one Direct Get away."""
    return f"{CAMPAIGNS_PREFIX}.{token(campaign_id, what='campaign id')}.device.{token(device_id, what='device id')}"


def campaign_events(campaign_id: str | None = None) -> str:
    """The filter for one campaign's events (its executions included), or every campaign's."""
    if campaign_id is None:
        return f"{CAMPAIGNS_PREFIX}.>"
    return f"{CAMPAIGNS_PREFIX}.{token(campaign_id, what='campaign id')}.>"


def campaign_steps(campaign_id: str) -> str:
    """The filter for one campaign's own events (created, paused, ...), without its devices' executions.

    What an operator's step needs to know its state: a campaign over 10,000 devices has
    tens of thousands of execution events, and no step depends on them.
    """
    return f"{CAMPAIGNS_PREFIX}.{token(campaign_id, what='campaign id')}.*"


def provision_request(claim_id: str) -> str:
    """Where a device holding claim `claim_id` asks for its certificate: the only subject it may publish on."""
    return f"{PROVISION_PREFIX}.{token(claim_id, what='claim id')}"


def command(device_id: str, command_id: str) -> str:
    return f"{COMMANDS_PREFIX}.{token(device_id, what='device id')}.{token(command_id, what='command id')}"


def audit(category: str, actor: str) -> str:
    return f"{AUDIT_PREFIX}.{token(category, what='audit category')}.{token(actor, what='actor')}"


def device_commands(device_id: str) -> str:
    """The filter of one device's commands."""
    return f"{COMMANDS_PREFIX}.{token(device_id, what='device id')}.>"


def site_consumer(site: str) -> str:
    """The hub's durable consumer on COMMANDS that a site's COMMANDS stream sources its devices' commands from."""
    return f"site-{token(site, what='site name')}"


def site_commands(site: str) -> str:
    """Where the hub delivers a site's commands, across the leaf link to the site's server."""
    return f"{SITES_PREFIX}.{token(site, what='site name')}.commands"


def hub_consumer_reset(site: str) -> str:
    """What a site's server asks to (re)start its source of the hub's commands: the only request the hub maps."""
    return f"{HUB_COMMANDS_API}.CONSUMER.RESET.COMMANDS.{site_consumer(site)}"


def device_consumer(device_id: str) -> str:
    """The durable JetStream consumer through which a device pulls its commands."""
    return f"device-{token(device_id, what='device id')}"


def inbox_prefix(identity: str) -> str:
    """A client's own reply-subject prefix: it may subscribe here and nowhere else.

    A shared `_INBOX.>` permission would let one device (or operator) read another's replies.
    """
    return f"_INBOX_{token(identity, what='identity')}"


def device_inbox_prefix(device_id: str) -> str:
    return inbox_prefix(device_id)


def claim_inbox_prefix(claim_id: str) -> str:
    """The reply prefix of a device that connects with claim `claim_id`'s bootstrap certificate.

    Claim ids and device ids are identities of the same CA, which never holds two live
    certificates under one identity, so no device shares a live claim's inbox.
    """
    return inbox_prefix(claim_id)
