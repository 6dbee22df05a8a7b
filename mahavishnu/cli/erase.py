"""`mahavishnu erase device ID --yes`: crypto-shred a device's personal fields (see mahavishnu.control.erasure)."""

from __future__ import annotations

import argparse
import getpass

from core.config import Settings
from core.errors import MahavishnuError
from core.events import SEALED_DEVICE_FIELDS
from core.store import EventStore
from mahavishnu.control import erasure
from mahavishnu.runtime.home import Home
from mahavishnu.runtime.offline import control_connection
from mahavishnu.runtime.streams import streams_of


def add(erase: argparse.ArgumentParser) -> None:
    kinds = erase.add_subparsers(dest="erase_command", required=True, metavar="WHAT")
    device = kinds.add_parser(
        "device", help=f"delete a device's data key: its {' and '.join(SEALED_DEVICE_FIELDS)} become unreadable"
    )
    device.add_argument("id")
    device.add_argument("--yes", action="store_true", help="confirm: an erasure cannot be undone")
    device.set_defaults(handler=_erase_device)


async def _erase_device(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    erasure.require_known(home, args.id)  # before anything else: an unknown id changes nothing, even with --yes
    if not args.yes:
        raise MahavishnuError(
            f"erasing {args.id} cannot be undone (its {' and '.join(SEALED_DEVICE_FIELDS)} become unreadable "
            f"everywhere): run `mahavishnu erase device {args.id} --yes`"
        )
    home.check_ready()
    # With `up` stopped it starts the server for the occasion: an erasure need not wait for the mesh.
    async with control_connection(home, settings, "mahavishnu-erase") as connected:
        store = EventStore(connected.nc, streams_of(settings))
        done = await erasure.erase(home, store, args.id, operator=_operator())
    if done.already:
        print(f"{args.id} is already erased (since {done.at:%Y-%m-%d %H:%M:%S} UTC): nothing to do")
        return 0
    destroyed = (
        f"data key {done.key_id} destroyed"
        if done.key_id
        else "no data key was left to destroy (enrolled before sealing, or destroyed by an earlier run)"
    )
    print(
        f"erased {args.id}: {destroyed}; its {' and '.join(SEALED_DEVICE_FIELDS)} are unreadable in the streams, "
        "in backups made without keys and in every read model (the events stay)"
    )
    return 0


def _operator() -> str:
    """Who ran the command, for the audit entry: the local user (the certificate identity is always "control")."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        return "unknown"
