"""`mahavishnu operator add|list|token`: people who query the mesh, their roles and HTTP tokens."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.config import Settings
from mahavishnu.control import operators
from mahavishnu.runtime.home import Home


def add(operator: argparse.ArgumentParser) -> None:
    actions = operator.add_subparsers(dest="operator_command", required=True, metavar="ACTION")
    adding = actions.add_parser("add", help="issue an operator certificate with a role")
    adding.add_argument("id")
    adding.add_argument("--role", required=True, choices=("admin", "operator", "auditor", "viewer"))
    adding.add_argument("--out", help="folder for ca.pem, cert.pem, key.pem (default HOME/operators/ID)")
    adding.set_defaults(handler=_add)
    actions.add_parser("list", help="operators and their roles").set_defaults(handler=_list)
    token = actions.add_parser("token", help="a new bearer token for the HTTP API (shown once)")
    token.add_argument("id")
    token.set_defaults(handler=_token)


def _add(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else home.root / "operators" / args.id
    issued = operators.add(home, settings, args.id, args.role, out_dir=out)
    print(
        f"operator {args.id} ({args.role}): cert {issued.cert_path}, key {issued.key_path}; query with "
        f"`nats --tlscert {issued.cert_path} --tlskey {issued.key_path} --tlsca {issued.ca_path} "
        f"--inbox-prefix _INBOX_{args.id} req mesh.q.devices.list ''`"
    )
    return 0


def _token(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    from mahavishnu.control import tokens

    print(tokens.issue(home, args.id))
    return 0


def _list(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    for identity, role in sorted(operators.roles(home).items()):
        print(f"{identity}  {role}")
    return 0
