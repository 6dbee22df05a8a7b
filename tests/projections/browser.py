"""The dashboard in a real browser, for its tests: Debian's headless chromium, the page's DOM once its scripts ran."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


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


async def dump_dom(url: str, profile: Path, server_certificate: Path, *, budget_ms: int = 5000) -> str:
    """The page at `url` as chromium's --dump-dom prints it, after its scripts ran.

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
        "--dump-dom",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()[-3000:]
    return out.decode()
