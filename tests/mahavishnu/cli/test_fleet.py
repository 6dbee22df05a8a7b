"""`mahavishnu fleet claim ...` and `device enroll --bulk` as an operator runs them, against a real `up`; a device
provisions itself with the edge install only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mahavishnu.cli.device_bulk import BadRow, Row, rows
from mahavishnu.cli.fleet import claim_line
from mahavishnu.identity.claims import Claim
from tests.mahavishnu.cli.test_agent import agent_process
from tests.mahavishnu.cli_harness import Running, one_line_error, run, start_up, stop_up
from tests.waiting import wait_until


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = start_up(tmp_path_factory.mktemp("fleet"))
    yield running
    stop_up(running)


def provision_on_a_device(claim: Path, device: str, out: Path) -> tuple[int, str, str]:
    made = agent_process("agent", "provision", "--claim", str(claim), "--id", device, "--out", str(out))
    said, err = made.communicate(timeout=90)
    return made.returncode, said, err


def audit_search(up: Running, action: str) -> list[dict[str, object]]:
    found = run("audit", "search", "--action", action, env=up.env)
    assert found.returncode == 0, found.stderr
    return [json.loads(line) for line in found.stdout.splitlines()]


def test_a_claim_is_made_used_listed_shown_and_revoked(up: Running, tmp_path: Path) -> None:
    claim_file = tmp_path / "batch.json"
    made = run(
        "fleet", "claim", "create", "--prefix", "pump-", "--count", "12", "--ttl", "2h", "--uses", "2",
        "--tag", "batch=b7", "--out", str(claim_file), env=up.env,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    claim_id = made.stdout.split()[1].rstrip(":")
    assert "devices pump-00 .. pump-11, 2 uses" in made.stdout
    assert "mahavishnu agent provision --claim batch.json --id pump-00 --out DIR" in made.stdout
    assert claim_file.stat().st_mode & 0o077 == 0

    code, said, err = provision_on_a_device(claim_file, "pump-03", tmp_path / "pump-03")
    assert code == 0, err
    assert "provisioned pump-03" in said
    code, _, err = provision_on_a_device(claim_file, "pump-12", tmp_path / "pump-12")
    assert code == 1 and "names pump-00 .. pump-11, not 'pump-12'" in err and len(err.strip().splitlines()) == 1

    [line] = run("fleet", "claim", "list", env=up.env).stdout.splitlines()
    assert line.startswith(f"{claim_id}  live  pump-00 .. pump-11  1/2 used  until ")
    assert line.endswith("no site  batch=b7")
    shown = json.loads(run("fleet", "claim", "show", claim_id, env=up.env).stdout)
    assert shown["provisioned"] == ["pump-03"] and shown["state"] == "live" and shown["tags"] == {"batch": "b7"}
    assert "key" not in json.dumps(shown).lower().replace('"keys"', "")

    revoked = run("fleet", "claim", "revoke", claim_id, "--reason", "key_compromise", env=up.env)
    assert revoked.returncode == 0, revoked.stderr
    code, _, err = provision_on_a_device(claim_file, "pump-04", tmp_path / "pump-04")
    assert code == 1 and f"refused claim {claim_id}: it was revoked" in err
    assert json.loads(run("fleet", "claim", "list", "--json", env=up.env).stdout)["state"] == "revoked"
    assert f"claim {claim_id} is revoked already" in one_line_error(
        run("fleet", "claim", "revoke", claim_id, env=up.env)
    )
    assert "no claim 'claim-0000000000'" in one_line_error(
        run("fleet", "claim", "show", "claim-0000000000", env=up.env)
    )

    # audited: the claim, its use, its revocation, and the refused connection of the revoked claim
    wait_until(
        lambda: any(e["target"] == "pump-03" and e["outcome"] == "ok" for e in audit_search(up, "device.provision")),
        timeout=30,
        what="the provisioning's audit entry",
    )
    wait_until(lambda: audit_search(up, "claim.revoke"), timeout=30, what="the revocation's audit entry")
    wait_until(
        lambda: any("provision-pump-04" in json.dumps(e) for e in audit_search(up, "connection.refused")),
        timeout=30,
        what="the revoked claim's refused connection in the audit trail",
    )


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--prefix", "Pump", "--count", "3", "--ttl", "1h"], "prefix 'Pump' cannot start a device id"),
        (["--prefix", "p-", "--count", "3", "--ttl", "soon"], "--ttl: not a duration: 'soon'"),
        (["--prefix", "p-", "--count", "3", "--ttl", "2y"], "--ttl: not a duration"),
        (["--prefix", "p-", "--count", "3", "--ttl", "400d"], "between 1 minute and 365 days"),
        (["--prefix", "p-", "--count", "3", "--ttl", "1h", "--uses", "4"], "--uses 4 must be between 1 and"),
        (["--prefix", "p-", "--count", "3", "--ttl", "1h", "--tag", "x"], "tag 'x' is not key=value"),
        (["--prefix", "p-", "--count", "3", "--ttl", "1h", "--site", "nowhere"], "no site 'nowhere'"),
    ],
)
def test_a_bad_claim_is_refused_before_anything_is_issued(up: Running, args: list[str], said: str) -> None:
    issued = run("ca", "list", env=up.env).stdout
    assert said in one_line_error(run("fleet", "claim", "create", *args, env=up.env))
    assert run("ca", "list", env=up.env).stdout == issued


def test_a_bulk_enrolment_goes_past_a_bad_row_and_says_which(up: Running, tmp_path: Path) -> None:
    batch = tmp_path / "batch.csv"
    batch.write_text(
        "id,transport,site,tags\n"
        "bulk-01\n"
        "Bad_Id,nats\n"
        "bulk-02,nats,,rack=r7;env=prod\n"
        "# a comment\n"
        "bulk-03,carrier-pigeon\n"
        "bulk-04,nats,,rack=r7\n"
    )
    enrolled = run("device", "enroll", "--bulk", str(batch), "--out", str(tmp_path / "devices"), env=up.env)
    assert enrolled.returncode == 1
    progress = enrolled.stderr.strip().splitlines()
    assert progress[0] == "[1/5] enrolled bulk-01"
    assert progress[1].startswith("[2/5] line 3: error: invalid identity 'Bad_Id'")
    assert progress[2] == "[3/5] enrolled bulk-02"
    assert progress[3].startswith("[4/5] line 6: error: unknown transport 'carrier-pigeon'")
    assert progress[4] == "[5/5] enrolled bulk-04"
    assert progress[5] == "error: 2 row(s) failed (line 3, 6): fix them and enrol those rows again"
    assert sorted(p.name for p in (tmp_path / "devices").iterdir()) == ["bulk-01", "bulk-02", "bulk-04"]
    assert "enrolled 3 device(s)" in enrolled.stdout

    def tagged() -> bool:
        listed = run("device", "list", "--json", "--tag", "rack=r7", env=up.env).stdout.splitlines()
        return {json.loads(line)["device_id"] for line in listed} == {"bulk-02", "bulk-04"}

    wait_until(tagged, timeout=30, what="the bulk devices' tags in the device list")
    mixed = run("device", "enroll", "--bulk", str(batch), "--site", "north", env=up.env)
    assert "--bulk takes each device's fields from its row: leave out --site" in one_line_error(mixed)
    assert "give the device's id, or --bulk FILE.csv" in one_line_error(run("device", "enroll", env=up.env))


def test_bulk_rows_are_parsed_each_on_its_own() -> None:
    parsed = rows("id,transport\n\nd-1\nd-2,mqtt,,a=b;c=d\n,nats\nd-3,nats,s,x,y\nd-4,nats,,bad tag\n")
    assert parsed == [
        Row(3, "d-1"),
        Row(4, "d-2", "mqtt", None, {"a": "b", "c": "d"}),
        BadRow(5, "no device id in the first column"),
        BadRow(6, "5 columns: a row is id,transport,site,tags (tags as k=v;k2=v2)"),
        BadRow(7, "tag 'bad tag' is not key=value (e.g. rack=r7)"),
    ]


def test_a_claim_is_one_line() -> None:
    claim = Claim(
        claim_id="claim-0123456789",
        prefix="s-",
        count=100,
        uses=100,
        expires_at=datetime(2027, 3, 8, 9, 0, tzinfo=UTC),
        serial="5a",
        url="tls://x:1",
        site="north",
        tags=(("batch", "b7"),),
        provisioned=frozenset({"s-01"}),
    )
    line = claim_line(claim, datetime(2027, 3, 1, tzinfo=UTC))
    assert line == "claim-0123456789  live  s-00 .. s-99  1/100 used  until 2027-03-08 09:00  site north  batch=b7"
