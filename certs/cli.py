"""`mahavishnu ca ...`: the CA's command line.

Each subcommand sets `func(args, home) -> int`; the CA lives in `home/ca` and issued
files go to `home/issued/<ID>` unless --out says otherwise. Results are printed one
line each; errors are raised as CertError and printed by the top-level CLI. Private
keys are written to files, never printed.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from certs.authority import CertificateAuthority, IssuedCertificate
from certs.files import read_bytes
from certs.names import ALGORITHMS, CLIENT_KINDS, validate_algorithm, validate_identity


def ca_dir(home: Path) -> Path:
    """Where the CA lives under the Mahavishnu home directory."""
    return home / "ca"


def _out_dir(args: argparse.Namespace, home: Path, identity: str) -> Path:
    # Validate before the identity becomes part of a path.
    return Path(args.out) if args.out else home / "issued" / validate_identity(identity)


def _day(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _issued_line(result: IssuedCertificate) -> str:
    key = f", key {result.key_path}" if result.key_path else ""
    return (
        f"issued {result.kind} {result.identity} serial {result.serial:x} valid until {_day(result.not_after)}: "
        f"cert {result.cert_path}{key}, ca {result.ca_path}"
    )


def _read_csr(path: str | None) -> bytes | None:
    return None if path is None else read_bytes(Path(path))


def cmd_init(args: argparse.Namespace, home: Path) -> int:
    """Create the CA in home/ca."""
    ca = CertificateAuthority.init(
        ca_dir(home), org=args.org, algorithm=validate_algorithm(args.algorithm), days=args.days
    )
    until = _day(ca.certificate.not_valid_after_utc)
    print(f"created CA in {ca.directory} ({ca.algorithm}, valid until {until}): peers trust {ca.cert_path}")
    return 0


def cmd_issue_server(args: argparse.Namespace, home: Path) -> int:
    """Issue a server certificate."""
    ca = CertificateAuthority.load(ca_dir(home))
    out = _out_dir(args, home, args.name)
    print(_issued_line(ca.issue_server(args.name, hosts=args.host, out_dir=out, days=args.days)))
    return 0


def cmd_issue_client(args: argparse.Namespace, home: Path) -> int:
    """Issue a client certificate, from a CSR or with a generated key."""
    ca = CertificateAuthority.load(ca_dir(home))
    out = _out_dir(args, home, args.id)
    result = ca.issue_client(args.id, kind=args.kind, out_dir=out, days=args.days, csr_pem=_read_csr(args.csr))
    print(_issued_line(result))
    return 0


def cmd_rotate_client(args: argparse.Namespace, home: Path) -> int:
    """Issue a new client certificate while the old one stays valid."""
    ca = CertificateAuthority.load(ca_dir(home))
    out = _out_dir(args, home, args.id)
    result = ca.rotate_client(args.id, out_dir=out, days=args.days, csr_pem=_read_csr(args.csr))
    print(_issued_line(result))
    return 0


def cmd_revoke(args: argparse.Namespace, home: Path) -> int:
    """Revoke an identity's certificates and re-sign the CRL."""
    ca = CertificateAuthority.load(ca_dir(home))
    for entry in ca.revoke(args.id, reason=args.reason, serial=args.serial):
        print(f"revoked {entry.identity} serial {entry.serial:x} ({entry.reason}); CRL {ca.crl_path}")
    return 0


def cmd_list(args: argparse.Namespace, home: Path) -> int:
    """List every issued certificate with its state."""
    ca = CertificateAuthority.load(ca_dir(home))
    now = datetime.now(UTC)
    records = ca.issued()
    if not records:
        print("no certificates issued yet")
    for r in records:
        state = "revoked" if r.revoked else "live" if r.is_live(now) else "expired"
        print(f"{r.identity}  {r.kind}  serial {r.serial:x}  until {_day(r.not_after)}  {state}")
    return 0


def _hex(text: str) -> int:
    return int(text, 16)


def add(ca: argparse.ArgumentParser) -> None:
    """Add the subcommands of `ca` to its parser; each sets `func(args, home) -> int`."""
    sub = ca.add_subparsers(dest="ca_command", required=True, metavar="COMMAND")

    init = sub.add_parser("init", help="create the CA")
    init.add_argument("--algorithm", choices=ALGORITHMS, default="ecdsa-p256")
    init.add_argument("--days", type=int, default=3650)
    init.add_argument("--org", default="Mahavishnu", help="organisation (O=) of every certificate")
    init.set_defaults(func=cmd_init)

    server = sub.add_parser("issue-server", help="issue a server certificate")
    server.add_argument("name")
    server.add_argument("--host", action="append", required=True, help="DNS name or IP address; repeat")
    server.add_argument("--out", help="output directory (default: HOME/issued/NAME)")
    server.add_argument("--days", type=int, default=397)
    server.set_defaults(func=cmd_issue_server)

    client = sub.add_parser("issue-client", help="issue a client certificate")
    client.add_argument("id")
    client.add_argument("--kind", choices=CLIENT_KINDS, default="device")
    _client_options(client)
    client.set_defaults(func=cmd_issue_client)

    rotate = sub.add_parser("rotate-client", help="issue a new client certificate, keeping the old one valid")
    rotate.add_argument("id")
    _client_options(rotate)
    rotate.set_defaults(func=cmd_rotate_client)

    revoke = sub.add_parser("revoke", help="revoke an identity's certificates")
    revoke.add_argument("id")
    revoke.add_argument("--reason", default="unspecified", help="CRL reason, e.g. key_compromise, superseded")
    revoke.add_argument("--serial", type=_hex, help="revoke only this serial (hex, as `ca list` shows)")
    revoke.set_defaults(func=cmd_revoke)

    listing = sub.add_parser("list", help="list issued certificates")
    listing.set_defaults(func=cmd_list)


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--csr", help="sign this CSR (PEM) instead of generating a key")
    parser.add_argument("--out", help="output directory (default: HOME/issued/ID)")
    parser.add_argument("--days", type=int, default=365)
