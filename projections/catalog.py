"""Every read model the mesh keeps, by name."""

from __future__ import annotations

from projections.audit import Audit
from projections.codeindex.readmodel import CodeIndex
from projections.commands import Commands
from projections.devices import Devices
from projections.projection import Projection

CATALOG: dict[str, type[Projection]] = {"devices": Devices, "commands": Commands, "audit": Audit, "code": CodeIndex}
