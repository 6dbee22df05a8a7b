"""Which artifacts the mesh holds, folded from their events, and how operators name them (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from core.events import ArtifactAdded, ArtifactRemoved, Event
from core.updates import naming


@dataclass(frozen=True)
class Artifact:
    name: str
    version: str
    device_type: str
    length: int
    sha256: str
    depends: tuple[str, ...]
    filename: str
    added_at: datetime
    added_by: str

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


def fold(events: Iterable[Event]) -> dict[str, Artifact]:
    """The artifacts added and not removed since, by target path, in the order they were added."""
    artifacts: dict[str, Artifact] = {}
    for event in events:
        match event:
            case ArtifactAdded():
                artifacts[naming.target_path(event.name, event.version)] = Artifact(
                    name=event.name,
                    version=event.version,
                    device_type=event.device_type,
                    length=event.length,
                    sha256=event.sha256,
                    depends=event.depends,
                    filename=event.filename,
                    added_at=event.occurred_at,
                    added_by=event.actor,
                )
            case ArtifactRemoved():
                artifacts.pop(naming.target_path(event.name, event.version), None)
    return artifacts


def parse_ref(value: str) -> tuple[str, str]:
    """NAME@VERSION as (name, version); ValueError saying what to write otherwise."""
    name, at, version = value.partition("@")
    if not at:
        raise ValueError(f"{value!r}: name the artifact as NAME@VERSION, e.g. firmware@1.4.2")
    return naming.artifact_name(name), naming.artifact_version(version)


def parse_depends(values: Sequence[str]) -> tuple[str, ...]:
    """What an artifact needs installed first: each NAME@VERSION or NAME (any version); ValueError for a bad one."""
    depends = []
    for value in values:
        if "@" in value:
            parse_ref(value)
        else:
            naming.artifact_name(value)
        depends.append(value)
    return tuple(depends)
