"""One valid instance of every event type, for round-trip tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.campaigns import ids
from core.campaigns.spec import AbortRule, CampaignSpec, CommandDocument, Document, FailureType, Pace, Targets, Wave
from core.campaigns.states import ExecutionState
from core.events import (
    EVENT_TYPES,
    ArtifactAdded,
    ArtifactRemoved,
    AuditRecorded,
    CampaignAborted,
    CampaignCanceled,
    CampaignCreated,
    CampaignFinished,
    CampaignPaused,
    CampaignResumed,
    CampaignStarted,
    CampaignTargeted,
    CampaignWaveOpened,
    CircuitChanged,
    ClaimCreated,
    ClaimRevoked,
    CommandAccepted,
    CommandCanceled,
    CommandExpired,
    CommandFailed,
    CommandIssued,
    CommandRejected,
    CommandRunning,
    CommandSucceeded,
    CommandTimedOut,
    CommitIndexed,
    DesiredStateSet,
    DeviceEnrolled,
    DeviceErased,
    DeviceHeartbeat,
    DeviceProvisioned,
    DeviceRevoked,
    DeviceRotated,
    DeviceTagged,
    Event,
    ExecutionChanged,
    ExecutionNotified,
    FileIndexed,
    FileRemoved,
    MeshStarted,
    MeshStopped,
    RepoAdded,
    RepoCommitSeen,
    RepoPollFailed,
    RepoRemoved,
    ReportedState,
    Sealed,
    SecretFound,
    SshHostRegistered,
    TelemetryReported,
    TrustMetadataPublished,
)
from core.events.code import FileAnalysis, ImportRecord, SecretFinding, Snippet, SymbolRecord


def code_index_events(repo: str) -> list[Event]:
    head, parent = "c0ffee" * 6 + "abcd", "beef00" * 6 + "abcd"
    finding = SecretFinding(type="aws-access-key", line=3, severity="high", value_hash="9f" * 32)
    analysis = FileAnalysis(
        path="app/main.py",
        size=120,
        language="python",
        lines=6,
        findings=(finding,),
        symbols=(
            SymbolRecord(
                kind="function", name="main", qualname="main", signature="def main()", line_start=1, line_end=6
            ),
        ),
        imports=(ImportRecord(module="os", line=1),),
        snippets=(
            Snippet(kind="symbol", qualname="main", line_start=1, line_end=6, text="KEY = '[REDACTED:aws-access-key]'"),
        ),
    )
    return [
        RepoAdded(repo=repo, location="/srv/git/app", branch="main", actor="control"),
        RepoCommitSeen(repo=repo, commit=head, previous=parent),
        RepoPollFailed(repo=repo, reason="connection refused", host="git.example.com"),
        CircuitChanged(repo=repo, host="git.example.com", state="open", failures=5, reason="connection refused"),
        FileIndexed(repo=repo, commit=head, analysis=analysis),
        FileRemoved(repo=repo, commit=head, path="app/old.py"),
        SecretFound(repo=repo, commit=head, path="app/main.py", finding=finding),
        CommitIndexed(repo=repo, commit=head, previous=parent, files_changed=1, files_removed=1, seconds=0.25),
        RepoRemoved(repo=repo, actor="control"),
    ]


def one_of_each(device_id: str = "dev-a") -> list[Event]:
    later = datetime(2027, 1, 1, tzinfo=UTC) + timedelta(days=365)
    events: list[Event] = [
        MeshStarted(node="node-1", version="0.1.0", url="tls://127.0.0.1:4222", actor="control"),
        MeshStopped(node="node-1"),
        DeviceEnrolled(device_id=device_id, serial="1f2e", fingerprint_sha256="ab" * 32, not_after=later),
        DeviceEnrolled(
            device_id=device_id,
            serial="1f2f",
            fingerprint_sha256="cd" * 32,
            not_after=later,
            owner=Sealed(key_id="0123456789abcdef", nonce=b"\x01" * 12, ciphertext=b"not really sealed"),
        ),
        DeviceEnrolled(
            device_id=device_id,
            serial="1f30",
            fingerprint_sha256="ef" * 32,
            not_after=later,
            transport="mqtt",
            site="site-north",
        ),
        DeviceErased(device_id=device_id, key_id="0123456789abcdef", fields=["owner", "location"], actor="control"),
        DeviceTagged(device_id=device_id, tags={"rack": "r7", "env": "prod"}, removed=["old"], actor="control"),
        DeviceRevoked(device_id=device_id, serials=["1f2e"], reason="key_compromise"),
        DeviceRotated(device_id=device_id, old_serial="1f2e", new_serial="3c4d", not_after=later),
        TelemetryReported(device_id=device_id, metrics={"cpu": 0.25, "temp_c": 41.5}, actor=device_id),
        DeviceHeartbeat(device_id=device_id, uptime_s=12.5, outbox=3, actor=device_id),
        DesiredStateSet(device_id=device_id, state={"rate": 5}, version=1, actor="control"),
        ReportedState(device_id=device_id, state={"rate": 5}, actor=device_id),
        CommandIssued(command_id="c-1", device_id=device_id, name="ping", args={"n": 1}, correlation_id="r-1"),
        CommandAccepted(command_id="c-1", device_id=device_id, actor=device_id, causation_id="e-1"),
        CommandRunning(command_id="c-1", device_id=device_id, actor=device_id),
        CommandSucceeded(command_id="c-1", device_id=device_id, actor=device_id, result={"pong": True}),
        CommandFailed(command_id="c-2", device_id=device_id, actor=device_id, error="exit status 2"),
        CommandTimedOut(command_id="c-3", device_id=device_id, actor=device_id, timeout_s=10.0),
        CommandRejected(command_id="c-4", device_id=device_id, actor=device_id, reason="unknown command 'x'"),
        CommandExpired(command_id="c-5", device_id=device_id, actor=device_id),
        CommandCanceled(command_id="c-6", device_id=device_id, actor="control", reason="operator"),
        AuditRecorded(category="identity", action="enroll", target=device_id, actor="control", prev_hash="00" * 32),
        *code_index_events(f"repo-{device_id}"),
        SshHostRegistered(
            device_id=f"{device_id}-ssh",
            host="10.0.0.7",
            user="ops",
            host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ1wPPJd4mHj0pZSHcLHDuOEEdgFmRN7udLPt7yDtsjN",
            fingerprint_sha256="SHA256:UMW9y3r+doJwE7nMpNDEl52ugelWPSYjs3nJmqc0eis",
            exec_allowlist=["uname -a"],
        ),
        ClaimCreated(
            claim_id="claim-0123456789",
            prefix="sensor-",
            count=100,
            uses=100,
            expires_at=later,
            serial="5a6b",
            url="tls://127.0.0.1:4222",
            site="site-north",
            tags={"batch": "b7"},
            actor="control",
        ),
        DeviceProvisioned(claim_id="claim-0123456789", device_id="sensor-07", serial="7c8d", actor="claim-0123456789"),
        ClaimRevoked(claim_id="claim-0123456789", serial="5a6b", reason="key_compromise", actor="control"),
        *campaign_events(device_id),
        ArtifactAdded(
            name="pump-fw", version="2.1.0", device_type="pump", length=52_428_800, sha256="ab" * 32, actor="control"
        ),
        ArtifactRemoved(name="pump-fw", version="2.0.0", reason="superseded", actor="control"),
        TrustMetadataPublished(role="timestamp", version=7, expires=later, signers=("4f3a",), actor="control"),
    ]
    assert {type(e) for e in events} == set(EVENT_TYPES), "add the new event type to one_of_each()"
    return events


def campaign_events(device_id: str) -> list[Event]:
    """One campaign's life over one device: every campaign event type once."""
    campaign = "cp-0123456789ab"
    spec = CampaignSpec(
        name="rotate",
        document=Document(command=CommandDocument(name="config.set", args={"key": "rate", "value": 5})),
        targets=Targets(tags={"role": "pump"}),
        pace=Pace(maximum_per_minute=600),
        waves=[Wave(name="canary", percent=5), Wave(name="rest", percent=95)],
        abort=[AbortRule(failure_type=FailureType.FAILED, threshold_pct=10, min_executed=100)],
    )
    command = ids.command_id(campaign, device_id, 1)
    return [
        CampaignCreated(campaign_id=campaign, spec=spec, actor="alice"),
        CampaignStarted(campaign_id=campaign),
        CampaignTargeted(campaign_id=campaign, devices=[device_id], wave=0),
        CampaignWaveOpened(campaign_id=campaign, wave=0, reason="start"),
        ExecutionNotified(campaign_id=campaign, device_id=device_id, attempt=1, command_id=command),
        ExecutionChanged(campaign_id=campaign, device_id=device_id, attempt=1, state=ExecutionState.SUCCEEDED),
        CampaignPaused(campaign_id=campaign, reason="operator", actor="alice"),
        CampaignResumed(campaign_id=campaign, actor="alice"),
        CampaignAborted(campaign_id=campaign, rule="abort[0]: failed >= 10% of >= 100", action="cancel"),
        CampaignCanceled(campaign_id=campaign, force=True, actor="alice"),
        CampaignFinished(campaign_id=campaign, reason="aborted"),
    ]
