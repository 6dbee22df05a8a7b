"""`mahavishnu artifact sign` and `artifact trust init|show|add-signature|rotate-root|refresh`: the update keys.

The metadata devices verify updates against is TUF's (ADR 0016): root, targets, snapshot
and timestamp, each with its own keys and k-of-n threshold. `trust init` makes the keys;
with --offline-keys DIR the root and targets keys go to DIR only (take it away), and an
`artifact add` then leaves the new targets file waiting in $MAHAVISHNU_HOME/trust/staged/
until enough targets keys sign it:

  - on the control host, with the key at hand:   artifact sign --key FILE.key
  - elsewhere (an offline machine): carry trust/staged/targets.json there,
        artifact sign --key FILE.key targets.json --out SIG.json
    and back on the control host:                artifact trust add-signature SIG.json

Once the threshold is reached the mesh publishes it with a new snapshot and timestamp.
Every step that publishes needs the mesh up; `trust init` and `sign FILE` do not.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from core.config import Settings
from core.errors import StoreUnavailable
from mahavishnu.cli.mesh import control_store
from mahavishnu.cli.verbs import mesh_of
from mahavishnu.runtime.home import Home
from mahavishnu.updates.trust import control
from mahavishnu.updates.trust.policy import KeyPlan, RoleKeys, TrustError

ACTOR = "control"  # the identity the command line acts as, as `cmd send` does


def add_actions(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `sign` and `trust ...` to the actions of `mahavishnu artifact`."""
    sign = actions.add_parser("sign", help="sign the staged targets metadata with an offline targets key")
    sign.add_argument("--key", required=True, type=Path, help="the targets key file (PEM, from `trust init`)")
    sign.add_argument(
        "file",
        nargs="?",
        type=Path,
        help="a copy of trust/staged/targets.json to sign here, without the mesh (then --out); "
        "omitted: sign the mesh's staged file and publish it once it has enough signatures",
    )
    sign.add_argument("--out", type=Path, help="with FILE: where to write the signature (default: standard output)")
    sign.set_defaults(local=_sign)

    trust = actions.add_parser("trust", help="the keys and signed metadata devices verify updates against")
    verbs = trust.add_subparsers(dest="trust_command", required=True, metavar="ACTION")
    init = verbs.add_parser("init", help="make each role's keys and first metadata (once per mesh)")
    for role in ("root", "targets", "snapshot", "timestamp"):
        init.add_argument(f"--{role}-keys", type=int, default=1, metavar="N", help=f"how many {role} keys (1)")
        init.add_argument(
            f"--{role}-threshold", type=int, default=1, metavar="K", help=f"how many must sign {role} (1)"
        )
    init.add_argument(
        "--offline-keys",
        type=Path,
        metavar="DIR",
        help="write the root and targets keys to DIR only, not under the mesh (keep DIR offline)",
    )
    init.set_defaults(handler=_init)

    show = verbs.add_parser("show", help="each role's version, expiry, threshold and keys; what waits for signatures")
    show.add_argument("--json", action="store_true", help="as one JSON document")
    show.set_defaults(handler=_show)

    add_signature = verbs.add_parser("add-signature", help="add signatures made by `artifact sign FILE --out`")
    add_signature.add_argument("signatures", nargs="+", type=Path, metavar="SIG")
    add_signature.set_defaults(handler=_add_signatures)

    rotate = verbs.add_parser(
        "rotate-root", help="a new root that replaces one role's keys (and threshold); devices follow it"
    )
    rotate.add_argument("--role", default="root", choices=("root", "targets", "snapshot", "timestamp"))
    rotate.add_argument("--keys", type=int, default=1, metavar="N", help="how many new keys (1)")
    rotate.add_argument("--threshold", type=int, default=1, metavar="K", help="how many must sign (1)")
    rotate.add_argument(
        "--root-key",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="a current root key kept offline (repeatable, up to root's threshold)",
    )
    rotate.add_argument(
        "--offline-keys", type=Path, metavar="DIR", help="root or targets: write the new keys to DIR only"
    )
    rotate.set_defaults(handler=_rotate)

    refresh = verbs.add_parser("refresh", help="re-sign what expires soon and publish what is not yet (`up` does it)")
    refresh.set_defaults(handler=_refresh)


def key_plan(args: argparse.Namespace) -> KeyPlan:
    """The --ROLE-keys and --ROLE-threshold flags as a KeyPlan (pure); TrustError for an impossible one."""
    roles = {
        role: RoleKeys(threshold=getattr(args, f"{role}_threshold"), count=getattr(args, f"{role}_keys"))
        for role in ("root", "targets", "snapshot", "timestamp")
    }
    return KeyPlan(**roles)


async def _init(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    root = await control.initialise(home, key_plan(args), offline_dir=args.offline_keys)
    print(f"trust initialised: root version {root.signed.version}, keys in {home.root / 'trust' / 'keys'}")
    if args.offline_keys is not None:
        print(f"root and targets keys in {args.offline_keys}: keep them offline; `artifact sign --key` signs with them")
    try:
        async with control_store(home, settings, "artifact") as store:
            await control.publish_all(home, store.js, store, actor=ACTOR)
        print("published to the tuf bucket")
    except StoreUnavailable:
        print("the mesh is not up: `mahavishnu up` publishes it when it starts")
    return 0


def show_text(summary: dict[str, Any]) -> str:
    """`trust show`'s text from control.summary's answer (pure)."""
    lines = []
    for role, state in summary["roles"].items():
        online = sum(key["online"] for key in state["keys"])
        lines.append(
            f"{role:<10} v{state['version']:<4} expires {state['expires']}  "
            f"{state['threshold']} of {len(state['keys'])} keys ({online} online)"
        )
        lines.extend(f"           {key['keyid']}{'' if key['online'] else '  offline'}" for key in state["keys"])
    lines.append(f"targets    {', '.join(summary['targets']) or '(none)'}")
    staged = summary["staged"]
    if staged is not None:
        lines.append(
            f"staged     targets v{staged['version']}: {staged['signed']} of {staged['threshold']} signatures, "
            f"in {staged['file']} (`artifact sign --key KEY`)"
        )
    return "\n".join(lines)


def _show(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    summary = control.summary(home)
    print(json.dumps(summary) if args.json else show_text(summary))
    return 0


def signing_text(outcome: control.Outcome, ref: str, *, added: bool) -> str:
    """What `artifact add` and `remove` say of the signed targets after their change (pure)."""
    if outcome.waiting is not None:
        waiting = outcome.waiting
        return (
            f"{ref}: targets v{waiting.version} waits for {waiting.threshold - waiting.signed} more signature(s) "
            "of the offline targets keys: `mahavishnu artifact sign --key FILE`"
        )
    versions = [event.version for event in outcome.published if event.role == "targets"]
    if not versions:
        return f"{ref}: the signed targets had it already" if added else f"{ref}: not in the signed targets"
    said = "signed: devices can verify it" if added else "withdrawn from the signed targets"
    return f"{ref}: {said} (targets v{versions[-1]})"


def _outcome_text(outcome: control.Outcome) -> str:
    if outcome.waiting is not None:
        waiting = outcome.waiting
        return f"targets v{waiting.version} has {waiting.signed} of {waiting.threshold} signatures: not published yet"
    published = ", ".join(f"{event.role} v{event.version}" for event in outcome.published)
    return f"published {published}" if published else "nothing new to publish"


async def _add_signatures(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    signatures = [control.signature_document(path) for path in args.signatures]
    async with control_store(home, settings, "artifact") as store:
        outcome = await control.add_signatures(home, store.js, store, signatures, actor=ACTOR)
    print(_outcome_text(outcome))
    return 0


async def _rotate(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    from mahavishnu.updates.trust import rotation

    plan = RoleKeys(threshold=args.threshold, count=args.keys)
    async with control_store(home, settings, "artifact") as store:
        outcome = await rotation.rotate(
            home,
            store.js,
            store,
            role=args.role,
            plan=plan,
            root_keys=args.root_key,
            offline_dir=args.offline_keys,
            actor=ACTOR,
        )
    print(_outcome_text(outcome))
    return 0


async def _refresh(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    async with control_store(home, settings, "artifact") as store:
        outcome = await control.refresh(home, store.js, store, actor=ACTOR)
    print(_outcome_text(outcome))
    return 0


def _sign(args: argparse.Namespace) -> int | Awaitable[int]:
    if args.file is None:
        return _sign_staged(args)
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise TrustError(f"cannot read {args.file}: {exc.strerror}") from None
    document = control.sign_file(data, args.key)
    text = json.dumps(document) + "\n"
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text)
        print(f"signature by key {document['signature']['keyid'][:12]} written to {args.out}")
    return 0


async def _sign_staged(args: argparse.Namespace) -> int:
    home, settings = mesh_of(args)
    staged = control.trust_files(home).read_staged()
    if staged is None:
        raise TrustError("no targets metadata waits for signatures: nothing to sign")
    signature = control.read_signature(control.sign_file(staged, args.key), str(args.key))
    async with control_store(home, settings, "artifact") as store:
        outcome = await control.add_signatures(home, store.js, store, [signature], actor=ACTOR)
    print(_outcome_text(outcome))
    return 0
