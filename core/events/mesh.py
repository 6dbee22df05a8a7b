"""Events about the mesh itself."""

from __future__ import annotations

from core import subjects
from core.events.base import Event


class MeshStarted(Event, frozen=True, kw_only=True, tag="mesh.started.v1"):
    """`mahavishnu up` brought the mesh up."""

    node: str
    version: str
    url: str

    def subject(self) -> str:
        return subjects.mesh_event("started")


class MeshStopped(Event, frozen=True, kw_only=True, tag="mesh.stopped.v1"):
    """The mesh was stopped cleanly."""

    node: str
    reason: str = "signal"

    def subject(self) -> str:
        return subjects.mesh_event("stopped")
