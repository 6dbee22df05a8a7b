"""What a process-pool worker runs: analyse a chunk of files and fit each result in one event.

Only this module (and what it imports: the pure analysis, the event records) is loaded in
the workers; no pygit2, no NATS. The indexer sends chunks of files rather than one file per
task to amortise the pickling and the round trip through the pool's queues.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Final

from core.events import encode
from core.events.code import FileAnalysis
from core.events.repo import FileIndexed
from projections.codeindex.analyse import Mode, analyse_file
from projections.codeindex.fitting import fit_analysis

__all__ = ["WORKER_NICENESS", "AnalysisJob", "WorkFile", "analyse_job", "lower_priority", "oversized", "ready"]

# Analysis is batch work: a lower scheduling priority keeps it from taking the CPU from event
# loops and nats-server on the same cores (on a 2-core machine an even share left the
# indexer's own loop waiting 50+ ms for a core), while it still uses every idle cycle.
WORKER_NICENESS: Final = 10

# (path, content or None when it was too large to be read, size in bytes)
WorkFile = tuple[str, bytes | None, int]


@dataclass(frozen=True, slots=True)
class AnalysisJob:
    """A chunk of one commit's files and how to analyse them; pickled to a worker."""

    repo: str
    commit: str
    files: tuple[WorkFile, ...]
    mode: Mode
    max_file_size: int
    max_event_bytes: int  # what one FileIndexed event may take, encoded
    hash_key: bytes = field(repr=False)  # never in a repr, a log line or a traceback's locals


def analyse_job(job: AnalysisJob) -> list[FileAnalysis]:
    """Each file's analysis, in order, each small enough for its FileIndexed event."""

    def size_of(analysis: FileAnalysis) -> int:
        return len(encode(FileIndexed(repo=job.repo, commit=job.commit, analysis=analysis)))

    analyses = []
    for path, data, size in job.files:
        if data is None:
            analysis = oversized(path, size, job.max_file_size)
        else:
            analysis = analyse_file(path, data, mode=job.mode, hash_key=job.hash_key, max_bytes=job.max_file_size)
        analyses.append(fit_analysis(analysis, budget=job.max_event_bytes, size_of=size_of))
    return analyses


def oversized(path: str, size: int, max_bytes: int) -> FileAnalysis:
    """The analysis of a file too large to be read at all (worded as `textfiles.classify` words it)."""
    return FileAnalysis(
        path=path,
        size=size,
        skipped="too-large",
        reason=f"{size:,} bytes is over the {max_bytes:,}-byte limit for indexed files",
    )


def lower_priority() -> None:
    """The pool's initializer: run the worker at `WORKER_NICENESS` (where the platform allows it)."""
    # No nice() (Windows), or not permitted: run at the normal priority.
    with contextlib.suppress(AttributeError, OSError):
        os.nice(WORKER_NICENESS)


def ready() -> int:
    """A no-op task that makes the pool start its processes before the first real chunk."""
    return 0
