"""The errors Mahavishnu raises on purpose: the whole tree, each class under its base, and where it lives.

Every message is one line that says what is wrong and what to do; the CLI prints it
as `error: <message>` and exits non-zero, without a traceback.

    MahavishnuError              core.errors                        the root: every error we raise on purpose
    ├── ConfigError              core.errors                        a configuration file or variable is wrong
    │   └── SectionError         core.config.settings               one [section]'s values are wrong
    ├── StoreError               core.errors                        the event store could not do what was asked
    │   ├── StoreUnavailable     core.errors                        nobody answered: down, unreachable, no JetStream
    │   ├── ConcurrencyConflict  core.errors                        an expected last sequence did not match
    │   ├── AppendFailed         core.errors                        an append refused or not acknowledged
    │   ├── _NoPeersYet          core.store.snapshots               a restored stream has no place in the cluster yet
    │   └── StreamConfigError    core.errors                        a stream could not be created or updated
    ├── ServiceRefusal           core.micro                         refused with an HTTP-like code; a micro ServiceError
    │   ├── NoAnswer             core.micro                         the service or device asked did not answer
    │   ├── QueryError           projections.reading                a query refused: 400, 403, 404, 503
    │   │   └── Refused          projections.admission              turned away at the door: 429 or 503
    │   ├── RequestError         mahavishnu.control.requests        the running mesh did not answer, or refused
    │   ├── ShellError           mahavishnu.gateways.shell.errors   a terminal request refused or failed
    │   └── ProvisioningRefused  mahavishnu.identity.errors         a device's claim request refused, and why
    ├── RequestInfoError         core.requester                     no usable Nats-Request-Info header
    │   ├── NoRequestInfo        core.requester                     the request did not cross accounts
    │   └── BadRequestInfo       core.requester                     the header is no JSON of the server's shape
    ├── EventDecodeError         core.events.base                   a payload is no valid event (it is parked)
    ├── ProbeError               core.probes                        the probe server could not start
    ├── SealingError             core.sealing                       a sealed field or a data key cannot be opened
    ├── TagError                 core.tags                          a device tag or a change of tags is malformed
    ├── CertError                certs.errors                       the CA refuses or cannot do what was asked
    │   ├── NoCAError            certs.errors                       the CA directory holds no CA yet
    │   ├── CAExistsError        certs.errors                       `ca init` where a CA exists already
    │   ├── CorruptCAError       certs.errors                       a CA file is unreadable or inconsistent
    │   ├── InvalidIdError       certs.errors                       an identity, kind, host or reason is malformed
    │   ├── BadCSRError          certs.errors                       a CSR does not parse, verify or match
    │   ├── AlreadyIssuedError   certs.errors                       the identity holds a live certificate
    │   └── NotIssuedError       certs.errors                       the identity or serial was never issued
    ├── EdgeError                edge.errors                        the edge agent could not do what was asked
    │   ├── AgentConfigError     edge.errors                        agent.toml is wrong (also a ConfigError)
    │   ├── DuplicateHandler     edge.errors                        a handler name is registered already
    │   ├── UnknownCommand       edge.errors                        no handler has the command's name
    │   ├── InvalidArguments     edge.errors                        a handler rejects a command's arguments
    │   ├── CommandError         edge.errors                        a handler's command ran and failed
    │   ├── StateError           edge.errors                        the agent's SQLite state file failed
    │   ├── UpdateRefused        edge.updates.errors                an update failed a check before install
    │   ├── DownloadFailed       edge.updates.download              an artifact's bytes could not be fetched now
    │   │   └── _LinkLost        edge.updates.download              chunks lost on the way: resume from the last
    │   ├── BadObjectInfo        edge.updates.objectinfo            an artifact's object info is missing or garbled
    │   ├── InstallError         edge.updates.installers            an installer could not install or switch back
    │   └── MetadataUnavailable  edge.updates.trust                 the update's signed metadata could not be read
    ├── Park                     projections.projection             an event a projection cannot apply
    ├── NotBuilt                 projections.readers                a read-model file does not exist yet
    ├── DatabaseKeyError         projections.database               the read models' key is wrong or missing
    ├── ProjectionError          projections.runner                 a read model could not be kept up to date
    ├── LoadError                projections.bulk_load              a bulk load (rebuild) failed
    ├── AppliedTwice             projections.writing                a batch's events were applied already
    ├── ReadModelsBusy           projections.service                another process owns the read models
    ├── CodeIndexError           projections.codeindex.errors       the code index could not do what was asked
    │   ├── RepositoryError      projections.codeindex.errors       a repository cannot be opened or read
    │   ├── RemoteAuthFailed     projections.codeindex.errors       a remote accepted none of our credentials
    │   ├── HashKeyError         projections.codeindex.errors       the secret-hash key file is unsafe or unreadable
    │   ├── IndexingFailed       projections.codeindex.errors       the analysis pool broke down
    │   ├── PollFailed           projections.codeindex.poller       one poll of one repository failed
    │   └── RepositoryRefused    projections.codeindex.repos        `repo add` got something that cannot be polled
    ├── SloError                 mahavishnu.cli.slo                 Prometheus could not be asked, or refused
    ├── BackupError              mahavishnu.control.backup          a backup cannot be made or restored
    ├── CommandRefused           mahavishnu.control.commands        no such command, or too late to cancel it
    ├── CampaignSpecError        mahavishnu.campaigns.specfile      a campaign file or its flags are wrong
    ├── CampaignRefused          mahavishnu.campaigns.control       no such campaign, or not a step its state allows
    ├── ArtifactRefused          mahavishnu.updates.artifacts       `artifact add|remove` got what it cannot store
    ├── ObjectExists             mahavishnu.updates.objects         an artifact's object is in the bucket already
    ├── SiteSilent               mahavishnu.control.site_copies     a site cannot say whether it holds a command
    ├── RotationPending          mahavishnu.control.devices         the agent still uses its old certificate
    ├── UnknownDevice            mahavishnu.control.erasure         no such device to erase
    ├── ErasureNotRecorded       mahavishnu.control.erasure         key destroyed, erasure not yet recorded
    ├── UntaggableDevice         mahavishnu.control.tags            no enrolled or registered device to tag
    ├── MqttError                mahavishnu.gateways.mqtt.devices   an MQTT device or listener cannot be served
    │   └── MqttPayloadError     mahavishnu.gateways.mqtt.devices   an MQTT payload cannot become an event
    ├── SshError                 mahavishnu.gateways.ssh.errors     an SSH host cannot be registered or reached
    │   ├── HostKeyError         mahavishnu.gateways.ssh.errors     a host key to pin is no OpenSSH key
    │   ├── HostKeyMismatch      mahavishnu.gateways.ssh.errors     the host's key is not the pinned one
    │   ├── SshConnectFailed     mahavishnu.gateways.ssh.errors     no SSH session within the timeout
    │   ├── SshAuthFailed        mahavishnu.gateways.ssh.errors     the host refused our credentials
    │   ├── SshCredentialsError  mahavishnu.gateways.ssh.errors     the identity file cannot be used
    │   └── SshTransferFailed    mahavishnu.gateways.ssh.errors     a file cannot be copied to the host (SFTP)
    ├── ClusterError             mahavishnu.runtime.cluster         the cluster cannot come up or lost its majority
    ├── BundleError              mahavishnu.runtime.bundle          a node bundle is unreadable or not for this host
    ├── OfflineError             mahavishnu.runtime.offline         servers started for a stopped mesh lack JetStream
    ├── ClusterPlanError         mahavishnu.runtime.clusterplan     the settings describe no runnable cluster
    ├── HomeError                mahavishnu.runtime.home            the state directory is missing or damaged
    ├── TrustError               mahavishnu.updates.trust.policy    the update metadata's keys or files refuse a change
    ├── CalloutError             mahavishnu.identity.errors         the server's authorization request is unreadable
    │   ├── MalformedToken       mahavishnu.identity.errors         not a NATS JWT
    │   └── BadRequest           mahavishnu.identity.errors         not an authorization request we can decide
    ├── ClaimError               mahavishnu.identity.claimfile      a claim or its file is malformed, foreign, altered
    ├── ServerStartError         mahavishnu.runtime.server          nats-server did not come up
    ├── GaveUp                   mahavishnu.runtime.supervisor      a child crashed too often, too fast
    └── SiteError                mahavishnu.sites.hub               a site is unknown, exists, or is damaged

A package's errors live beside its code; this drawing is the one map of them all, and
tests/core/test_errors.py keeps it true: every exception class in core, certs, edge,
projections and mahavishnu derives from MahavishnuError and is drawn here, under one
of its bases, with the module it lives in. Edge's errors need only this module, so a
device with nats-py and msgspec alone can import them.

Lower libraries' errors are translated into these where they are caught, once, with
`raise ... from exc` so the cause stays in the chain: nats-py's in core.store.nats_errors,
sqlite3's in edge.state, SQLCipher's where the read models are opened and read
(projections.database, .reading, .runner), asyncssh's in mahavishnu.gateways.ssh.pool,
libgit2's in projections.codeindex.gitread, cryptography's in certs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.lazy import lazy_names

if TYPE_CHECKING:
    from core.micro import NoAnswer as NoAnswer
    from core.micro import ServiceRefusal as ServiceRefusal


class MahavishnuError(Exception):
    """Base of every error Mahavishnu raises on purpose; str(e) is one line saying what is wrong and what to do."""


class ConfigError(MahavishnuError):
    """One or more configuration values are wrong; `.problems` has one message per wrong field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class StoreError(MahavishnuError):
    """The event store could not complete an operation."""


class StoreUnavailable(StoreError):
    """No NATS server with JetStream answered in time."""


class ConcurrencyConflict(StoreError):
    """An append expected a different last sequence on its subject: someone wrote first.

    Reload the aggregate's events and decide again.
    """

    def __init__(self, subject: str, expected: int, message: str = "") -> None:
        self.subject = subject
        self.expected = expected
        detail = f": {message}" if message else ""
        super().__init__(
            f"concurrency conflict on {subject}: expected last sequence {expected}{detail}; "
            "reload the events of this subject and retry"
        )


class AppendFailed(StoreError):
    """The server refused an append or did not acknowledge it in time; nothing may be assumed stored."""


class StreamConfigError(StoreError):
    """A stream definition could not be applied to the server."""


# ServiceRefusal and NoAnswer live in core.micro: they derive from nats micro's ServiceError,
# whose package loads micro's whole service (0.2 MB), which a device's agent never runs.
__getattr__ = lazy_names(__name__, {"ServiceRefusal": "core.micro", "NoAnswer": "core.micro"})
