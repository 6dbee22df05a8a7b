"""The dashboard in a real browser, for its tests: Debian's headless chromium, the page's DOM once its scripts ran,
and a screenshot of it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from html.parser import HTMLParser
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from core.metrics import new_registry
from core.probes import ProbeServer, ServerTLS
from core.store import EventStore
from mahavishnu.runtime.home import Home
from projections import http_api
from projections.catalog import CATALOG
from projections.runner import ProjectionRunner


class Tables(HTMLParser):
    """The cell texts of every table's body rows in a page, by table id."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.rows: dict[str, list[list[str]]] = {}
        self._table = ""
        self._in_body = False
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("id") or ""
            self.rows[self._table] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows[self._table].append([])
        elif tag == "td" and self._in_body:
            self.rows[self._table][-1].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False

    def handle_data(self, data: str) -> None:
        if self._in_body and self.rows.get(self._table) and self.rows[self._table][-1]:
            self.rows[self._table][-1][-1] += data


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def spki_pin(certificate: Path) -> str:
    """Chromium's pin of a certificate's key: base64 of the SHA-256 of its SubjectPublicKeyInfo."""
    key = x509.load_pem_x509_certificate(certificate.read_bytes()).public_key()
    return base64.b64encode(
        hashlib.sha256(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).digest()
    ).decode()


# In CI a missing browser fails the test (.ci/run installs it); elsewhere the test is skipped.
CAN_BROWSE = chromium() is not None or os.environ.get("CI") == "true"


async def dump_dom(
    url: str,
    profile: Path,
    server_certificate: Path,
    *,
    budget_ms: int = 5000,
    screenshot: Path | None = None,
    window: tuple[int, int] = (1280, 2000),
) -> str:
    """The page at `url` as chromium's --dump-dom prints it, after its scripts ran.

    With `screenshot`, the same run also saves a PNG of the `window` there (one CSS pixel
    per pixel), so the DOM's layout (getBoundingClientRect) and the picture match.

    The virtual time budget lets the page's fetches finish (chromium waits for the network
    while the budget runs). The browser runs beside the caller's event loop, which serves
    its requests meanwhile. It does not know the mesh CA: it trusts exactly the server's
    key (pinning needs a profile folder).
    """
    browser = chromium()
    assert browser is not None, "chromium is not installed (.ci/run installs it)"
    process = await asyncio.create_subprocess_exec(
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        f"--ignore-certificate-errors-spki-list={spki_pin(server_certificate)}",
        f"--virtual-time-budget={budget_ms}",
        *(
            []
            if screenshot is None
            else [
                f"--screenshot={screenshot}",
                f"--window-size={window[0]},{window[1]}",
                "--force-device-scale-factor=1",
                "--hide-scrollbars",
            ]
        ),
        "--dump-dom",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()[-3000:]
    return out.decode()


async def project_all(store: EventStore, models: Path, key: str) -> None:
    """Every read model of the catalog, caught up once with `store`, into `models`."""
    for model in CATALOG.values():
        runner = ProjectionRunner(model(), store, directory=models, key=key)
        await runner.open()
        await runner.catch_up()
        await runner.close()


@contextlib.asynccontextmanager
async def serving(home: Home, routes: Sequence[BaseRoute]) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """The HTTPS door (the mesh's server certificate) with `routes` and /driven/<name>, which serves
    the dashboard with scripts[name] after its own: (its base URL, scripts), for a test to fill."""
    scripts: dict[str, str] = {}

    async def page(request: Request) -> Response:
        return await driven(scripts[request.path_params["name"]])(request)

    server_dir = home.server_dir
    tls = ServerTLS(server_dir / "cert.pem", server_dir / "key.pem", client_ca=home.ca_dir / "ca.pem")
    served = [*routes, Route("/driven/{name}", page, methods=["GET"])]
    server = ProbeServer("127.0.0.1", 0, new_registry(), ready=lambda: True, routes=served, tls=tls)
    await server.start()
    try:
        yield f"{server.scheme}://127.0.0.1:{server.port}", scripts
    finally:
        await server.stop()


def driven(script: str) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint serving the dashboard with `script` after its own (--dump-dom cannot click: a script drives it)."""
    page = http_api.dashboard_files()["index.html"][0].decode()

    async def serve(request: Request) -> Response:
        return HTMLResponse(page.replace("</body>", script + "</body>"))

    return serve


def measuring(selector: str) -> str:
    """A script that, once the page has loaded, writes the box (x,y,width,height in CSS pixels) of
    each element matching `selector` as its data-box, then marks the body measured."""
    return f"""
<script>
(async () => {{
  while (document.body.dataset.loaded !== "yes") await new Promise(done => setTimeout(done, 50));
  for (const element of document.querySelectorAll({json.dumps(selector)})) {{
    const r = element.getBoundingClientRect();
    element.dataset.box = [r.x, r.y, r.width, r.height].map(Math.round).join(",");
  }}
  document.body.dataset.measured = "yes";
}})();
</script>
"""


# Each panel's box and each chart's: what the screenshot is checked against.
MEASURE = measuring("section.panel, figure.chart")


def boxes(page: str) -> dict[str, tuple[int, int, int, int]]:
    """The boxes MEASURE wrote, by the element's id (panels) or data-metric (charts)."""
    found = {}
    for tag in re.findall(r"<(?:section|figure)\b[^>]*data-box=[^>]*>", page):
        name = re.search(r'\b(?:id|data-metric)="([^"]+)"', tag)
        box = re.search(r'data-box="([^"]+)"', tag)
        assert name and box, tag
        x, y, w, h = (int(n) for n in box[1].split(","))
        found[name[1]] = (x, y, w, h)
    return found
