"""The HTTP door's artifact route: an artifact's bytes to whoever holds a signed link (mahavishnu.updates.links).

    GET /artifacts/{name}/{version}?device=&expires=&sig=   the bytes (Range requests too: a cut
                                                            download resumes), 403 for a link that
                                                            does not hold, 404 for no such artifact

The door keeps a verified copy of each artifact asked for under the home's artifact cache:
fetched once from the bucket with the device downloader (edge.updates.download, checked
against the length and SHA-256 that `artifact.added` recorded), then served as a file, so a
fleet fetching one artifact reads the bucket once. Each link served is logged, not audited:
fetching changes nothing, and the command it belongs to is in the streams already.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from core.events import CommandIssued
from core.store import EventStore
from core.updates import naming
from core.updates.states import INSTALL_COMMAND
from edge.updates.download import DownloadFailed, download
from edge.updates.errors import UpdateRefused
from mahavishnu.updates import artifacts, links
from mahavishnu.updates.catalog import Artifact

log = logging.getLogger("mahavishnu.updates")

# The door reads the bucket through one consumer of its own (ota-http-door), so one copy at a time.
DOOR = "http-door"


class ArtifactDoor:
    """The route, and what the MQTT bridge tells a device about its update (`fetch_for`); `base` is the door's URL."""

    def __init__(self, store: EventStore, key: bytes, cache: Path, base: str) -> None:
        self.store = store
        self.key = key
        self.cache = cache
        self.base = base
        self._copying = asyncio.Lock()

    async def fetch_for(self, command: CommandIssued) -> dict[str, object] | None:
        """Where the device of an `update.install` fetches its artifact, and what the bytes must be; None for
        any other command, or an artifact the mesh does not hold (the device then refuses it as unknown)."""
        if command.name != INSTALL_COMMAND:
            return None
        name, version = command.args.get("name"), command.args.get("version")
        if not isinstance(name, str) or not isinstance(version, str):
            return None
        try:
            target = naming.target_path(name, version)
        except ValueError:
            return None
        artifact = (await artifacts.artifacts(self.store)).get(target)
        if artifact is None:
            return None
        expires = int(command.occurred_at.timestamp() + command.ttl_s + command.timeout_s)
        url = links.link(self.base, self.key, name=name, version=version, device=command.device_id, expires=expires)
        return {
            "url": url,
            "length": artifact.length,
            "sha256": artifact.sha256,
            "device_type": artifact.device_type,
            "expires_at": datetime.fromtimestamp(expires, UTC).isoformat(),
        }

    def route(self) -> Route:
        return Route(links.PATH, self.serve, methods=["GET", "HEAD"])

    async def serve(self, request: Request) -> Response:
        name, version = request.path_params["name"], request.path_params["version"]
        query = request.query_params
        device = query.get("device", "")
        refused = links.refusal(
            self.key,
            name=name,
            version=version,
            device=device,
            expires=query.get("expires", ""),
            sig=query.get("sig", ""),
            now=time.time(),
        )
        if refused is not None:
            log.warning("artifact link refused", extra={"artifact": f"{name}@{version}", "reason": refused})
            return JSONResponse({"error": refused}, status_code=403)
        try:
            target = naming.target_path(name, version)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        artifact = (await artifacts.artifacts(self.store)).get(target)
        if artifact is None:
            return JSONResponse({"error": f"no artifact {name}@{version}: it was removed"}, status_code=404)
        try:
            path = await self.copy_of(artifact)
        except DownloadFailed as exc:
            return JSONResponse({"error": f"{exc}; try again"}, status_code=503)
        except UpdateRefused as exc:
            log.error("the bucket's bytes are not the artifact's", extra={"artifact": artifact.ref, "reason": str(exc)})
            return JSONResponse({"error": f"the mesh's copy of {artifact.ref} is damaged"}, status_code=502)
        log.info("artifact served by link", extra={"artifact": artifact.ref, "device": device})
        return FileResponse(path, media_type="application/octet-stream", filename=f"{name}-{version}")

    async def copy_of(self, artifact: Artifact) -> Path:
        """The verified copy of `artifact`, fetched from the bucket the first time it is asked for."""
        path = self.cache / artifact.name / artifact.version / artifact.sha256
        if path.is_file():
            return path
        async with self._copying:
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                await download(
                    self.store.nc,
                    device_id=DOOR,
                    target=naming.target_path(artifact.name, artifact.version),
                    dest=path,
                    length=artifact.length,
                    sha256=artifact.sha256,
                )
        return path
