"""The rule of who sees a device's personal fields (pure), its SQL form for the list, and the README's table of it."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
import sqlcipher3

from core.events import SEALED_DEVICE_FIELDS
from projections.authz import ROLES
from projections.device_queries import DeviceList, devices_list, list_statement
from projections.personal import RULE, SEALED_MARK, Sight, shown, sight
from projections.reading import ReadModels
from tests.projections.device_fleet import KEY, enrolled, write_devices

README = Path(__file__).parents[2] / "README.md"
DEVICE = {"device_id": "dev-a", "status": "enrolled", "owner": "Ada", "location": None}


def test_the_rule_names_every_role_and_every_personal_field() -> None:
    assert set(RULE) == set(ROLES)
    assert all(set(fields) == set(SEALED_DEVICE_FIELDS) for fields in RULE.values())


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("admin", {"owner": "Ada", "location": None}),
        ("operator", {"owner": "Ada", "location": None}),
        ("auditor", {"owner": SEALED_MARK, "location": None}),  # that there is an owner, and no location
        ("viewer", {}),
        ("root", {}),  # a role the rule does not name
        (None, {}),  # no role at all
    ],
)
def test_each_role_sees_the_personal_fields_as_the_rule_says(role: str | None, expected: dict[str, object]) -> None:
    assert shown(role, DEVICE) == {"device_id": "dev-a", "status": "enrolled", **expected}


def test_a_personal_field_the_rule_does_not_name_is_left_out() -> None:
    assert sight("admin", "birthday") is Sight.LEFT_OUT


def personal_devices(folder: Path, role: str | None) -> ReadModels:
    """dev-a with an owner and a location as the fold stores them once opened, dev-b with neither."""
    write_devices(folder, [enrolled("dev-a"), enrolled("dev-b")])
    connection = sqlcipher3.connect(str(folder / "devices.db"), isolation_level=None)
    connection.execute(f"PRAGMA key = \"x'{KEY}'\"")
    connection.execute("UPDATE devices SET owner = 'Ada', location = 'Lab 2' WHERE device_id = 'dev-a'")
    connection.close()
    return ReadModels(folder, KEY, role=role)


@pytest.mark.parametrize("role", [*ROLES, None])
async def test_the_list_shows_each_role_what_shown_shows_it(tmp_path: Path, role: str | None) -> None:
    """The list builds its answer in SQL; it must say what the rule says, device by device."""
    models = personal_devices(tmp_path, role)
    page = msgspec.json.decode(msgspec.json.encode(await devices_list(models, DeviceList())))
    personal = [{k: d[k] for k in SEALED_DEVICE_FIELDS if k in d} for d in page["devices"]]
    rows = [{"owner": "Ada", "location": "Lab 2"}, {"owner": None, "location": None}]
    assert personal == [shown(role, row) for row in rows]


def test_the_list_statement_names_no_personal_column_for_a_viewer() -> None:
    sql, _ = list_statement(DeviceList(), datetime.now(UTC), "viewer")
    assert not any(re.search(rf"\b{field}\b", sql) for field in SEALED_DEVICE_FIELDS)


def test_the_readme_table_is_the_rule() -> None:
    text = README.read_text()
    header = "| role     | " + " | ".join(f"{field:<9}" for field in SEALED_DEVICE_FIELDS) + " |"
    assert header in text, "the README's table of roles and personal fields is missing or has other columns"
    words = {Sight.VALUE: "the value", Sight.MARKED: f'"{SEALED_MARK}"', Sight.LEFT_OUT: "left out"}
    for role, fields in RULE.items():
        line = f"| {role:<8} | " + " | ".join(f"{words[fields[f]]:<9}" for f in SEALED_DEVICE_FIELDS) + " |"
        assert line in text, f"the README's table says otherwise of {role}: expected {line!r}"
