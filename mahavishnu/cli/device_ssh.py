"""`mahavishnu device add-ssh`: register a host whose commands the SSH gateway of `up` runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.config import Settings
from mahavishnu.cli.mesh import control_store
from mahavishnu.runtime.home import Home


def add_action(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`device add-ssh`: an action of `device`, not a verb of its own."""
    add = actions.add_parser(
        "add-ssh",
        help="register a host reached over SSH (no agent): the gateway of `up` runs its commands",
        description=(
            "Pin the host's key (--host-key, --host-key-file, or explicitly --trust-on-first-use) and say how the "
            "gateway logs in (--identity-file, else the SSH agent of the user running up). Registering again "
            "replaces the key, the user and the allowlist."
        ),
    )
    add.add_argument("id", help="device id: [a-z0-9][a-z0-9-]{0,62}")
    add.add_argument("--host", required=True, help="host name or address")
    add.add_argument("--port", type=int, default=22)
    add.add_argument("--user", required=True, help="the user commands run as")
    add.add_argument("--host-key", help="the host's public key line, e.g. 'ssh-ed25519 AAAA...'")
    add.add_argument("--host-key-file", help="a file holding it (the host's ssh_host_*_key.pub, or a known_hosts line)")
    add.add_argument(
        "--trust-on-first-use",
        action="store_true",
        help="fetch the key the host presents now and pin it (check the printed fingerprint out of band)",
    )
    add.add_argument("--identity-file", help="private key the gateway logs in with (its path is kept locally, 0600)")
    add.add_argument("--passphrase-file", help="a file holding the identity file's passphrase")
    add.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="COMMAND_LINE",
        help="a command line `exec` may run on the host, e.g. 'uname -a' (repeat for more)",
    )
    updates = add.add_argument_group(
        "software updates (docs/updates.md, SSH hosts)",
        "with --update-dir the gateway installs update.install's artifacts on the host, in A/B slots under DIR",
    )
    updates.add_argument("--update-dir", metavar="DIR", help="absolute folder on the host for the slots, e.g. /opt/app")
    updates.add_argument("--device-type", metavar="T", help="the device type the host's artifacts must be built for")
    updates.add_argument(
        "--health-check",
        metavar="COMMAND_LINE",
        help="run on the host after the switch; the update commits only if it exits 0 within --commit-timeout",
    )
    updates.add_argument("--commit-timeout", type=float, metavar="SECONDS", help="for the health check (default 60)")
    add.set_defaults(handler=_add_ssh)


async def _add_ssh(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    # The gateway's modules load asyncssh: only this action needs them, not every `device` action.
    from mahavishnu.gateways.ssh import registration as ssh_devices
    from mahavishnu.gateways.ssh.credentials import Credentials

    home.check_ready()
    ssh_devices.check_address(args.host, args.port, args.user)
    updates = ssh_devices.check_updates(
        device_type=args.device_type,
        update_dir=args.update_dir,
        health_check=args.health_check,
        commit_timeout=args.commit_timeout,
    )
    key, trust = await ssh_devices.resolve_host_key(
        host_key=args.host_key,
        host_key_file=Path(args.host_key_file) if args.host_key_file else None,
        trust_on_first_use=args.trust_on_first_use,
        host=args.host,
        port=args.port,
        timeout=settings.ssh.connect_timeout,
    )
    credentials = Credentials(_absolute(args.identity_file), _absolute(args.passphrase_file))
    async with control_store(home, settings, "device") as store:
        event = await ssh_devices.register(
            home,
            store,
            args.id,
            host=args.host,
            port=args.port,
            user=args.user,
            host_key=key,
            trust=trust,
            credentials=credentials,
            allow=args.allow,
            updates=updates,
        )
    login = f"identity file {credentials.identity_file}" if credentials.identity_file else "the SSH agent"
    print(
        f"registered {args.id}: {args.user}@{args.host}:{args.port}, host key {event.fingerprint_sha256} "
        f"({'trusted on first use' if trust == 'tofu' else 'pinned'}), login with {login}, "
        f"{len(event.exec_allowlist)} allowed command line(s); the SSH gateway of `up` runs its commands"
        + (f"; updates for device type {event.device_type} go to {event.update_dir}" if event.updates else "")
    )
    if trust == "tofu":
        print(
            f"note: {event.fingerprint_sha256} is the key {args.host}:{args.port} presented just now, unverified; "
            "compare it with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the host"
        )
    return 0


def _absolute(path: str | None) -> Path | None:
    """An absolute path, since `up` (which reads the gateway's credentials) may run in another folder."""
    return Path(path).expanduser().resolve() if path else None
