"""An operator's side of the remote terminal: requests to the shell broker, errors made readable (thin I/O).

The connection must be an operator's (OPS account): the broker knows the caller and its
connection from the server, never from these bodies. Every refusal arrives in micro's
error headers and is raised here again as the ShellError the broker raised: its code and
one-line reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import msgspec
import nats.errors
from cryptography import x509
from nats.aio.client import Client
from nats.micro.request import ERROR_CODE_HEADER, ERROR_HEADER

from core.errors import MahavishnuError
from core.store import Identity
from core.store.nats_errors import unanswered
from mahavishnu.gateways.shell.errors import ShellError
from mahavishnu.gateways.shell.protocol import POLL_WAIT_S, PREFIX, Opened, OpenRequest, Output, ReadRequest, Resize
from mahavishnu.runtime.home import Home

REQUEST_TIMEOUT_S = 10.0
OPERATOR_URI = "mahavishnu:operator:"


@dataclass(frozen=True)
class Operator:
    """Who the terminal connects as: an operator's name (its inbox prefix) and TLS files."""

    name: str
    identity: Identity


def operator_from_folder(home: Home, url: str, name: str) -> Operator:
    """The operator `name` whose files `mahavishnu operator add` wrote to HOME/operators/NAME."""
    folder = home.root / "operators" / name
    files = (folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        raise MahavishnuError(
            f"no certificate of operator {name!r} here ({', '.join(missing)} missing): "
            "pass --cert, --key and --ca, or add the operator with `mahavishnu operator add`"
        )
    return Operator(name, Identity(url, *files))


def operator_from_files(url: str, cert: Path, key: Path, ca: Path) -> Operator:
    """The operator whose certificate is `cert`; its name is in the certificate (mahavishnu:operator:<name>)."""
    try:
        certificate = x509.load_pem_x509_certificate(cert.read_bytes())
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound) as exc:
        raise MahavishnuError(f"{cert} is not a readable operator certificate ({exc}): check --cert") from None
    names = [u for u in sans.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith(OPERATOR_URI)]
    if not names:
        raise MahavishnuError(f"{cert} is not an operator's certificate: use the one `mahavishnu operator add` made")
    return Operator(names[0].removeprefix(OPERATOR_URI), Identity(url, ca, cert, key))


class ShellClient:
    """The broker's endpoints as methods; ShellError for every refusal."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc

    async def open(
        self, device: str, *, shell: str = "", rows: int = 24, cols: int = 80, term: str = "xterm"
    ) -> Opened:
        body = msgspec.json.encode(OpenRequest(device=device, shell=shell, rows=rows, cols=cols, term=term))
        return msgspec.json.decode(await self._ask(f"{PREFIX}.open", body, timeout=30), type=Opened)

    async def send(self, session: str, data: bytes) -> None:
        await self._ask(f"{PREFIX}.input.{session}", data)

    async def read(self, session: str, after: int) -> Output:
        body = msgspec.json.encode(ReadRequest(after=after))
        return msgspec.json.decode(await self._ask(f"{PREFIX}.read.{session}", body), type=Output)

    async def resize(self, session: str, rows: int, cols: int) -> None:
        await self._ask(f"{PREFIX}.resize.{session}", msgspec.json.encode(Resize(rows=rows, cols=cols)))

    async def close(self, session: str) -> None:
        await self._ask(f"{PREFIX}.close.{session}", b"")

    async def _ask(self, subject: str, body: bytes, *, timeout: float = REQUEST_TIMEOUT_S + POLL_WAIT_S) -> bytes:
        try:
            reply = await self.nc.request(subject, body, timeout=timeout)
        except (nats.errors.Error, TimeoutError) as exc:  # not answered: translated in one place
            no = unanswered(
                exc,
                asked="the shell broker",
                timeout=timeout,
                nobody="no shell broker answers: is `mahavishnu up` running?",
            )
            raise ShellError(no.status, no.description) from None
        headers = reply.headers or {}
        if ERROR_CODE_HEADER in headers:
            raise ShellError(headers[ERROR_CODE_HEADER], headers.get(ERROR_HEADER, "refused"))
        return reply.data
