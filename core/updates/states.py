"""The states of one device's update, Mender's names (pure): what the agent reports and the read models count.

downloading -> installing -> [rebooting ->] committing -> committed
                                              \\-> rolled_back (health check failed or timed out)
refused (a check failed before anything changed), failed (an error the installer could not undo)
"""

from __future__ import annotations

from enum import StrEnum


class UpdateState(StrEnum):
    DOWNLOADING = "downloading"
    INSTALLING = "installing"
    REBOOTING = "rebooting"
    COMMITTING = "committing"
    COMMITTED = "committed"
    ROLLED_BACK = "rolled_back"
    REFUSED = "refused"
    FAILED = "failed"


ENDED = frozenset({UpdateState.COMMITTED, UpdateState.ROLLED_BACK, UpdateState.REFUSED, UpdateState.FAILED})
# The command that carries an update to a device (edge.updates registers its handler).
INSTALL_COMMAND = "update.install"
# Where a device stands with an artifact (projections.updates.compliance says how each is decided).
COMPLIANCE = ("latest", "pending", "failed", "outdated")
