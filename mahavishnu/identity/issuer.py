"""The identity service's signing key: an account nkey whose public half the server's configuration names.

The server accepts a callout's answer only when this key signed it, so the seed is as
secret as the CA key: 0600 in the state directory, read by `up` only, never logged.
"""

from __future__ import annotations

import nkeys

from mahavishnu.identity.natsjwt import keypair, new_account_seed
from mahavishnu.runtime.home import Home, HomeError, write_private


def ensure(home: Home) -> None:
    """Create the signing key once (idempotent: a mesh keeps its key across starts)."""
    if not home.callout_seed.is_file():
        write_private(home.callout_seed, new_account_seed().decode() + "\n")


def signer(home: Home) -> nkeys.KeyPair:
    """The signing key; HomeError saying what to do when it is missing or damaged."""
    try:
        return keypair(home.callout_seed.read_bytes().strip())
    except FileNotFoundError as exc:
        raise HomeError(f"{home.callout_seed} is missing: run `mahavishnu up` (or `init`) to create it") from exc
    except (nkeys.NkeysError, ValueError) as exc:
        raise HomeError(
            f"{home.callout_seed} is not an account key ({exc.__class__.__name__}): delete it and restart "
            "`mahavishnu up`, which writes a new one into the server's configuration"
        ) from exc


def public_key(home: Home) -> str:
    return str(signer(home).public_key.decode())
