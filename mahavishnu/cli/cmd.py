"""`mahavishnu cmd ...`: send commands to devices and follow them."""

from __future__ import annotations

import argparse
import json

from core.config import Settings
from core.errors import MahavishnuError
from core.units import parse_duration
from mahavishnu.cli.arguments import command_arguments
from mahavishnu.cli.mesh import control_store
from mahavishnu.control import commands
from mahavishnu.runtime.home import Home


def add(cmd: argparse.ArgumentParser) -> None:
    actions = cmd.add_subparsers(dest="cmd_command", required=True, metavar="ACTION")

    send = actions.add_parser("send", help="send a command; --wait prints its result")
    send.add_argument("device", help="device id")
    send.add_argument("name", help="command name, e.g. ping, info, echo, exec")
    send.add_argument("--args", default="{}", help="JSON object of arguments")
    send.add_argument("--ttl", default="30s", help="time to live before delivery (expired: never run)")
    send.add_argument("--timeout", default="10s", help="how long it may run on the device")
    send.add_argument("--wait", action="store_true", help="wait for the outcome; exit non-zero unless it succeeded")
    send.set_defaults(handler=_send)

    status = actions.add_parser("status", help="one command's state, as JSON")
    status.add_argument("command_id")
    status.set_defaults(handler=_status)

    listing = actions.add_parser("list", help="a device's commands still in the stream")
    listing.add_argument("--device", required=True)
    listing.set_defaults(handler=_list)

    cancel = actions.add_parser("cancel", help="cancel a command its device has not received yet")
    cancel.add_argument("command_id")
    cancel.set_defaults(handler=_cancel)


def _seconds(option: str, text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise MahavishnuError(f"{option} {text!r}: {exc}") from exc


def _document(view: commands.CommandView) -> str:
    return json.dumps(
        {
            "command_id": view.command_id,
            "device": view.device_id,
            "name": view.name,
            "state": view.state,
            "result": view.result,
            "detail": view.detail,
        }
    )


async def _send(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    arguments = command_arguments(args.args)
    ttl, timeout = _seconds("--ttl", args.ttl), _seconds("--timeout", args.timeout)
    async with control_store(home, settings, "cmd") as store:
        if not args.wait:
            command = await commands.send(
                store, args.device, args.name, arguments, ttl_s=ttl, timeout_s=timeout, actor="control"
            )
            print(command.command_id)
            return 0
        view = await commands.send_and_wait(
            store,
            args.device,
            args.name,
            arguments,
            ttl_s=ttl,
            timeout_s=timeout,
            actor="control",
            deadline_s=ttl + timeout + 5,
        )
    print(_document(view))
    return 0 if view.state == "succeeded" else 1


async def _status(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    async with control_store(home, settings, "cmd") as store:
        print(_document(await commands.status(store, args.command_id)))
    return 0


async def _list(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    async with control_store(home, settings, "cmd") as store:
        for view in await commands.list_for(store, args.device):
            print(_document(view))
    return 0


async def _cancel(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    from mahavishnu.sites import hub as sites  # only a cancel asks which site holds a device

    at_sites = {device: site.api for site in sites.registered(home) for device in site.devices}
    async with control_store(home, settings, "cmd") as store:
        await commands.cancel(store, args.command_id, actor="control", site_of=lambda d: at_sites.get(d, ""))
    print(f"canceled {args.command_id}")
    return 0
