"""`mahavishnu agent csr|provision|run`: the device side, which must work with only the `edge` install.

Only the standard library, msgspec and nats-py may load here: everything else is
imported inside the commands that need it (tests/mahavishnu/cli/test_agent.py runs
this with the control plane's packages blocked). Every action is `local` (verbs.py): a
device's agent reads its agent.toml and nothing else, so on a control host too `agent run
--config` loads none of the control plane (tests/mahavishnu/cli/test_imports.py). Only
`--simulate`, which enrols devices, opens the mesh's state directory.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.errors import MahavishnuError
from mahavishnu.cli.verbs import mesh_of


def add(agent: argparse.ArgumentParser) -> None:
    actions = agent.add_subparsers(dest="agent_command", required=True, metavar="ACTION")

    csr = actions.add_parser("csr", help="make this device's key (0600) and a CSR to enrol with")
    csr.add_argument("--id", required=True, help="this device's id")
    csr.add_argument("--out", required=True, help="folder for key.pem and csr.pem")
    csr.add_argument("--algorithm", choices=("ecdsa-p256", "ed25519"), default="ecdsa-p256")
    csr.set_defaults(local=_csr)

    provision = actions.add_parser(
        "provision", help="get this device's certificate and agent.toml by a claim (its key never leaves --out)"
    )
    provision.add_argument("--claim", required=True, help="the claim file `mahavishnu fleet claim create` wrote")
    provision.add_argument("--id", required=True, help="this device's id: one the claim names")
    provision.add_argument("--out", required=True, help="folder for key.pem, cert.pem, ca.pem and agent.toml")
    provision.add_argument("--algorithm", choices=("ecdsa-p256", "ed25519"), default="ecdsa-p256")
    provision.set_defaults(local=_provision)

    run = actions.add_parser("run", help="run the agent until SIGTERM or Ctrl-C")
    run.add_argument("--config", help="agent.toml written by `mahavishnu device enroll`")
    run.add_argument("--simulate", type=int, metavar="N", help="run N simulated devices in one process (control host)")
    run.set_defaults(local=_run)


async def _run(args: argparse.Namespace) -> int:
    from mahavishnu.cli import agent_runner

    if (args.config is None) == (args.simulate is None):
        raise MahavishnuError("give either --config agent.toml or --simulate N")
    if args.config is not None:
        return await agent_runner.run_agent(Path(args.config))
    if not 1 <= args.simulate <= 10_000:
        raise MahavishnuError(f"--simulate {args.simulate}: choose between 1 and 10000 devices")
    return await agent_runner.run_simulated(*mesh_of(args), args.simulate)


async def _provision(args: argparse.Namespace) -> int:
    from mahavishnu.cli.agent_provision import provision

    out = Path(args.out)
    answer = await provision(Path(args.claim), args.id, out, algorithm=args.algorithm)
    print(
        f"provisioned {answer.device_id}: serial {answer.serial}, files in {out} (key.pem never left it); "
        f"run `mahavishnu agent run --config {out / 'agent.toml'}`"
    )
    return 0


def _csr(args: argparse.Namespace) -> int:
    from core.subjects import token
    from mahavishnu.cli.device_keys import make_key_and_csr

    token(args.id, what="device id")
    key, csr = make_key_and_csr(args.id, Path(args.out), args.algorithm)
    print(
        f"key {key} (0600, it never leaves this device); send {csr} to the operator for "
        f"`mahavishnu device enroll {args.id} --csr {csr.name}`"
    )
    return 0
