"""`mahavishnu agent csr|run`: the device side, which must work with only the `edge` install.

Only the standard library, msgspec and nats-py may load here: everything else is
imported inside the commands that need it (tests/mahavishnu/cli/test_agent.py runs
this with the control plane's packages blocked). Both actions are `local` (verbs.py): a
device's agent reads its agent.toml and nothing else, so on a control host too `agent run
--config` loads none of the control plane (tests/mahavishnu/cli/test_imports.py). Only
`--simulate`, which enrols devices, opens the mesh's state directory.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
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


def _csr(args: argparse.Namespace) -> int:
    from core.subjects import token

    token(args.id, what="device id")
    out = Path(args.out)
    try:
        from certs import make_key_and_csr, validate_identity
    except ImportError:  # a device without `cryptography`: openssl makes the same files
        key, csr = _openssl_csr(args.id, out, args.algorithm)
    else:
        validate_identity(args.id)
        key, csr = make_key_and_csr(args.id, out, args.algorithm)
    print(
        f"key {key} (0600, it never leaves this device); send {csr} to the operator for "
        f"`mahavishnu device enroll {args.id} --csr {csr.name}`"
    )
    return 0


def _openssl_csr(device_id: str, out: Path, algorithm: str) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise MahavishnuError("making a CSR needs the `cryptography` package or the `openssl` command: install one")
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    key, csr = out / "key.pem", out / "csr.pem"
    new_key = (
        ["-newkey", "ed25519"]
        if algorithm == "ed25519"
        else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    )
    old_umask = os.umask(0o077)  # the key is 0600 from its first byte
    try:
        subprocess.run(
            [
                openssl,
                "req",
                "-new",
                *new_key,
                "-nodes",
                "-keyout",
                str(key),
                "-out",
                str(csr),
                "-subj",
                f"/CN={device_id}",
            ],
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as exc:
        raise MahavishnuError(f"openssl could not make the CSR: {exc.stderr.decode(errors='replace').strip()}") from exc
    finally:
        os.umask(old_umask)
    return key, csr
