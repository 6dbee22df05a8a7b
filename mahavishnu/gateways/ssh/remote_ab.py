"""The A/B layout on an SSH host, as the shell command lines the gateway runs there (pure).

The same layout and artifact format as the agent's A/B installer (edge.updates.installers.ab):

    <update_dir>/a/  <update_dir>/b/          the slots: one version's files each
    <update_dir>/a.release                    {"name": ..., "version": ...} of what slot a holds
    <update_dir>/current -> a                 what runs
    <update_dir>/.incoming.tar.gz             the artifact while it is copied and unpacked

Each function returns one command line (`sh -c '...'`) for
mahavishnu.gateways.ssh.pool.run_command. They need a POSIX shell, GNU tar and GNU
coreutils on the host (`mv -T`, `sync -f`, `sha256sum`, `readlink`). Every value put into a
line is quoted (shlex), so a folder name with spaces or quotes stays one word.

`install` checks that the copied file is the one the gateway checked (SHA-256), unpacks it
into the slot `current` does not point to, drops setuid, setgid and sticky bits (as the
agent's extraction does), writes the slot's release file and syncs the file system; its last
output line is "<slot> <previous slot or nothing>". `point` switches `current` atomically:
a new link under a temporary name, renamed over `current` (`mv -T` is rename(2)), so a reader
sees the old link or the new, never none. `rollback` points back, or removes `current` when
the update was the first one, and does nothing when `current` is already right (idempotent).
"""

from __future__ import annotations

import json
import shlex

SLOTS = ("a", "b")
UPLOAD = ".incoming.tar.gz"


def _sh(script: str) -> str:
    return f"sh -c {shlex.quote(script)}"


def _point(slot: str) -> str:
    tmp = shlex.quote(f".current.{slot}.tmp")
    return f"rm -f -- {tmp}; ln -s -- {shlex.quote(slot)} {tmp}; mv -T -- {tmp} current; sync -f ."


def upload_path(update_dir: str) -> str:
    """Where the artifact is copied to on the host."""
    return f"{update_dir.rstrip('/')}/{UPLOAD}"


def install(update_dir: str, *, sha256: str, name: str, version: str) -> str:
    """Unpack the uploaded artifact into the inactive slot; prints "<slot> <previous slot>" last."""
    where = shlex.quote(update_dir)
    release = shlex.quote(json.dumps({"name": name, "version": version}))
    script = f"""set -eu
umask 022
cd -- {where}
trap 'rm -f -- {UPLOAD}' EXIT
if [ -L current ]; then active=$(readlink current); elif [ -e current ]; then
  echo {shlex.quote(f"{update_dir}/current is not a link; move it away")} >&2; exit 3
else active=; fi
case "$active" in
  a) slot=b ;;
  b|'') slot=a ;;
  *) echo {shlex.quote(f"{update_dir}/current")}" points to $active, not a slot; point it at a or b" >&2; exit 3 ;;
esac
echo {shlex.quote(f"{sha256}  {UPLOAD}")} | sha256sum -c --status - || {{
  echo "the artifact's copy on the host is not the one checked (SHA-256 differs); send the update again" >&2; exit 4; }}
rm -rf -- ".incoming-$slot"
mkdir -- ".incoming-$slot"
tar -xzf {UPLOAD} -C ".incoming-$slot" --no-same-owner --no-same-permissions
chmod -R ugo-st -- ".incoming-$slot"
rm -rf -- "$slot" "$slot.release"
mv -T -- ".incoming-$slot" "$slot"
printf '%s\\n' {release} > "$slot.release"
sync -f .
echo "$slot $active"
"""
    return _sh(script)


def point(update_dir: str, slot: str) -> str:
    """Point `current` at `slot` atomically and sync the folder."""
    _check_slot(slot)
    return _sh(f"set -eu\ncd -- {shlex.quote(update_dir)}\n{_point(slot)}\n")


def rollback(update_dir: str, *, slot: str, previous_slot: str | None) -> str:
    """Point `current` back at `previous_slot`, or remove it when the update in `slot` was the first one."""
    _check_slot(slot)
    if previous_slot is None:
        undo = f'if [ "$active" = {shlex.quote(slot)} ]; then rm -f -- current; sync -f .; fi'
    else:
        _check_slot(previous_slot)
        undo = f'if [ "$active" != {shlex.quote(previous_slot)} ]; then {_point(previous_slot)}; fi'
    return _sh(
        f"set -eu\ncd -- {shlex.quote(update_dir)}\n"
        "if [ -L current ]; then active=$(readlink current); else active=; fi\n"
        f"{undo}\n"
    )


def health_check(line: str, *, name: str, version: str, previous: str | None, update_dir: str) -> str:
    """The host's health check, told what was installed the way the agent tells its own (environment)."""
    return shlex.join(
        [
            "env",
            f"MAHAVISHNU_ARTIFACT_NAME={name}",
            f"MAHAVISHNU_ARTIFACT_VERSION={version}",
            f"MAHAVISHNU_PREVIOUS_VERSION={previous or ''}",
            f"MAHAVISHNU_UPDATE_DIR={update_dir}",
            "sh",
            "-c",
            line,
        ]
    )


def parse_installed(output: str) -> tuple[str, str | None]:
    """(slot, previous slot or None) from `install`'s last output line; ValueError when it is not one."""
    lines = output.strip().splitlines()
    words = lines[-1].split() if lines else []
    if not words or words[0] not in SLOTS or (len(words) > 1 and words[1] not in SLOTS) or len(words) > 2:
        raise ValueError(f"unexpected output of the install on the host: {output.strip()[-200:]!r}")
    return words[0], words[1] if len(words) > 1 else None


def _check_slot(slot: str) -> None:
    if slot not in SLOTS:
        raise ValueError(f"{slot!r} is not a slot (a or b)")
