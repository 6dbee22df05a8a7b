"""The states of a campaign and of one device's execution in it; the values are the strings on the wire.

    execution:  queued ──> in_progress ──> succeeded | failed | timed_out | rejected
                   └──────────┴──────────> removed | canceled

    campaign:   created ──> running <──> paused
                               └──────> aborted | canceled | finished

Execution states are AWS IoT Jobs' (QUEUED, IN_PROGRESS, ...), so operators who know them
read ours the same way. `queued` means notified: the command is on its way or waiting for
an offline device. A failed attempt with retries left is followed by a new attempt, queued
again.
"""

from __future__ import annotations

from enum import StrEnum


class ExecutionState(StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    REJECTED = "rejected"
    REMOVED = "removed"  # no longer a target (a continuous campaign's device that stopped matching, or revoked)
    CANCELED = "canceled"


ENDED: frozenset[ExecutionState] = frozenset(ExecutionState) - {ExecutionState.QUEUED, ExecutionState.IN_PROGRESS}
# The endings an abort rule counts as executed (removed and canceled ones did not run to an outcome).
EXECUTED: frozenset[ExecutionState] = ENDED - {ExecutionState.REMOVED, ExecutionState.CANCELED}


class CampaignStatus(StrEnum):
    CREATED = "created"  # waiting for its start time
    RUNNING = "running"
    PAUSED = "paused"
    ABORTED = "aborted"  # a rule fired; executions under way may still end (or roll back)
    CANCELED = "canceled"
    FINISHED = "finished"


OVER: frozenset[CampaignStatus] = frozenset({CampaignStatus.CANCELED, CampaignStatus.FINISHED})
