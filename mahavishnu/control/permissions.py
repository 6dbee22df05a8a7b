"""What each kind of certificate may do on the server (pure): the users of users.conf, and a device's.

A device D may only
  - publish what it reports, on its own subjects: mesh.evt.device.D.{telemetry,heartbeat,reported,command}
    (not its enrolment, revocation, tags or desired state: those are the control side's)
  - pull from its own durable consumer:        $JS.API.CONSUMER.MSG.NEXT.COMMANDS.device-D
    and read that consumer's info:             $JS.API.CONSUMER.INFO.COMMANDS.device-D
  - acknowledge its own deliveries:            $JS.ACK.COMMANDS.device-D.>
  - receive replies on its own inbox prefix:   _INBOX_D.>
  - read software updates: the signed metadata (Direct Get on KV_tuf), an artifact's
    object info (Direct Get on OBJ_artifacts) and its chunks through the one consumer
    named for it (ota-D: create with a filter, pull, delete); reading only, and every
    artifact is verified against the signed metadata before it is used
  - serve its own remote terminal sessions:    subscribe mesh.pty.ctl.D and mesh.pty.in.D.>,
    publish mesh.pty.out.D.> and mesh.pty.end.D.>, and answer the control requests it
    received (allow_responses); only the control identity may publish to the first two
Nothing else: no other device's subjects, no other JetStream API, no $SYS, no `>`.
An edge site's certificate may only link its leaf server (no client connection), and the
link carries none of the mesh's own subjects either way (LEAF_DENIED): the hub gets a
site's events only by sourcing the site's stream, so nothing is stored twice, and the site
its devices' commands only by sourcing the hub's consumer for it; it hears nothing else
the hub sends (ADR 0013).
The control services are unrestricted within the MESH account. Operators live in the
OPS account and may only send queries (mesh.q.>) and terminal requests to the shell
broker (mesh.shell.>), receiving on their own inbox prefix.
"""

from __future__ import annotations

import json
from datetime import datetime

from certs import IssuedRecord, certificate_uri
from core import subjects
from core.updates import naming
from edge import shell_protocol
from mahavishnu.runtime.natsconf import User

COMMANDS_STREAM = "COMMANDS"
# What a device reports, each on its own event subject (core.events: TelemetryReported,
# DeviceHeartbeat, ReportedState and the steps of a command): the only events a device may
# publish, so that it cannot append, say, a DeviceRevoked or a DeviceTagged about itself.
DEVICE_REPORTS = ("telemetry", "heartbeat", "reported", "command")
# What a site's leaf link never carries, in either direction: events, commands, audit and
# queries (and campaigns) stay in the JetStream domain where they were published, and a site never asks the
# hub's provisioning service for a claim it does not hold. Sourcing travels on
# JetStream's own subjects ($JS.<domain>.API, deliveries, flow control), which stay open.
LEAF_DENIED = ("mesh.evt.>", "mesh.cmd.>", "mesh.audit.>", "mesh.campaign.>", "mesh.q.>", "mesh.provision.>")
# On the hub a site is also kept away from the hub's own JetStream API: it may neither manage
# the hub's streams nor answer requests meant for them. Sourcing does not need it: the hub
# asks the site at $JS.<domain>.API. (Denying the site `_INBOX.>` as well breaks the replies
# to the hub's own requests across the link: measured, so it stays open.)
# Nor may a site send the control side's terminal traffic to the hub's devices (opening a
# shell, typing into one) or ask the shell broker for one: only the control identity does.
SITE_PUBLISH_DENIED = (*LEAF_DENIED, "$JS.API.>", "mesh.pty.ctl.>", "mesh.pty.in.>", "mesh.shell.>")
SITE_SUBSCRIBE_DENIED = (*LEAF_DENIED, "$JS.API.>")
# JetStream's replies to a site's server: to its requests of the hub's API ($JSC.R) and to its
# flow control as the origin of a source ($JS.FC).
JETSTREAM_REPLIES = ("$JSC.R.>", "$JS.FC.>")


# The configured users of MESH, OPS and SYS connect as NATS clients only: on the MQTT listener
# the server would otherwise set up MQTT session streams in their account (only MQTT devices,
# in the MQTT account, use MQTT: ADR 0008).
NATS_ONLY = ("STANDARD",)


def device_user(device_id: str, serial: int) -> User:
    consumer = subjects.device_consumer(device_id)
    return User(
        name=certificate_uri(serial),
        publish_allow=(
            *(subjects.device_event(device_id, what) for what in DEVICE_REPORTS),
            f"$JS.API.CONSUMER.MSG.NEXT.{COMMANDS_STREAM}.{consumer}",
            f"$JS.API.CONSUMER.INFO.{COMMANDS_STREAM}.{consumer}",
            f"$JS.ACK.{COMMANDS_STREAM}.{consumer}.>",
            *shell_publish(device_id),
            *update_reads(device_id),
        ),
        subscribe_allow=(f"{subjects.device_inbox_prefix(device_id)}.>", *shell_subscribe(device_id)),
        allow_responses=True,  # answers to the control side's shell requests, and to nothing else
    )


def update_reads(device_id: str) -> tuple[str, ...]:
    """The JetStream API a device uses to fetch software updates: reads of the two buckets, nothing else."""
    consumer = naming.download_consumer(device_id)
    return (
        f"$JS.API.DIRECT.GET.{naming.METADATA_STREAM}.>",
        f"$JS.API.DIRECT.GET.{naming.ARTIFACTS_STREAM}.>",
        f"$JS.API.CONSUMER.CREATE.{naming.ARTIFACTS_STREAM}.{consumer}.>",  # with a filter: one object's chunks
        f"$JS.API.CONSUMER.MSG.NEXT.{naming.ARTIFACTS_STREAM}.{consumer}",
        f"$JS.API.CONSUMER.DELETE.{naming.ARTIFACTS_STREAM}.{consumer}",
    )


def shell_publish(device_id: str) -> tuple[str, ...]:
    """What a device publishes for its remote terminal sessions: its own output and end subjects."""
    return (shell_protocol.output_subject(device_id, "*"), shell_protocol.end_subject(device_id, "*"))


def shell_subscribe(device_id: str) -> tuple[str, ...]:
    """What a device hears for its remote terminal sessions: its own control and input subjects."""
    return (shell_protocol.control_subject(device_id), shell_protocol.input_subject(device_id, "*"))


def site_user(serial: int, name: str) -> User:
    """An edge site's leaf server (MESH account): leaf connections only, none of the mesh's subjects.

    What the hub sends it is listed (ADR 0013): the commands the hub delivers to this site, the
    hub's requests to its own JetStream API, and the replies and flow control of JetStream's
    own protocol. A deny list would not do: nats-server does not filter what a leaf's wildcard
    subscription receives by the deny list (measured: another site's `mesh.site.>` received
    this site's commands, and stalled their delivery).
    """
    return User(
        name=certificate_uri(serial),
        publish_deny=SITE_PUBLISH_DENIED,
        subscribe_allow=(f"{subjects.SITES_PREFIX}.{name}.>", f"$JS.{name}.API.>", *JETSTREAM_REPLIES),
        subscribe_deny=SITE_SUBSCRIBE_DENIED,
        connection_types=("LEAFNODE",),
    )


def site_mappings(records: list[IssuedRecord], now: datetime) -> str:
    """The MESH account's mappings for the live sites (pure): each site's restart of its own consumer
    of the hub's commands, from HUB_COMMANDS_API onto the hub's API, and nothing else of that API.

    Literal subjects: nats-server compares every message of the account with its mappings,
    and a literal one costs a string comparison (ADR 0013).
    """
    pairs = [
        f"    {json.dumps(subjects.hub_consumer_reset(site))}: "
        f"{json.dumps(subjects.hub_consumer_reset(site).replace(subjects.HUB_COMMANDS_API, '$JS.API', 1))}"
        for site in live_sites(records, now)
    ]
    return "\n".join(["mappings: {", *pairs, "}", ""]) if pairs else "# no edge sites: no mappings\n"


def live_sites(records: list[IssuedRecord], now: datetime) -> list[str]:
    """The names of the sites with a live certificate, in order (pure)."""
    return sorted({r.identity for r in records if r.kind == "site" and r.is_live(now)})


def operator_user(identity: str, serial: int) -> User:
    """A person (OPS account): may send queries and read the replies on its own inbox prefix, nothing else."""
    return User(
        name=certificate_uri(serial),
        publish_allow=("mesh.q.>", "mesh.shell.>"),
        subscribe_allow=(f"{subjects.inbox_prefix(identity)}.>",),
        connection_types=NATS_ONLY,
    )


def users_for(
    records: list[IssuedRecord], now: datetime
) -> tuple[tuple[User, ...], tuple[User, ...], tuple[User, ...]]:
    """One user per live (unrevoked, unexpired) client certificate but a device's: (MESH users, OPS users, SYS users).

    Control is unrestricted in MESH, operators (OPS) may only query; what each operator may
    query is decided by its role. Devices are not users of the configuration: up's identity
    service admits each with `device_user`'s permissions when it connects (ADR 0012).
    """
    mesh: list[User] = []
    ops: list[User] = []
    system: list[User] = []
    for record in records:
        if not record.is_live(now):
            continue
        if record.kind == "control":
            mesh.append(User(certificate_uri(record.serial), connection_types=NATS_ONLY))
        elif record.kind == "site":
            mesh.append(site_user(record.serial, record.identity))
        elif record.kind == "operator":
            ops.append(operator_user(record.identity, record.serial))
        elif record.kind == "system":
            system.append(
                User(
                    certificate_uri(record.serial),
                    publish_allow=("_INBOX.>", "$SYS.REQ.>"),
                    subscribe_allow=("$SYS.>", "_INBOX.>"),
                    connection_types=NATS_ONLY,
                )
            )
    return tuple(mesh), tuple(ops), tuple(system)
