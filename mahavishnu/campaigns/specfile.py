"""A campaign file (TOML) into a checked CampaignSpec; anything wrong refused in one line naming the field.

    name = "rotate-config"
    [document.command]            # or [document.desired]: a desired shadow state,
                                  # or [document.update]: name, version (an artifact)
    name = "config.set"
    args = { key = "rate", value = 5 }
    [targets]
    tags = { role = "pump" }      # or devices = ["pump-01", ...]; site, transport, presence
    [pace]
    maximum_per_minute = 600

docs/campaigns.md describes every key. The file's keys are the spec's fields, except that
durations are written as people write them ("10m", core.units) under the name without
`_s`: `ttl = "1h"` is `ttl_s = 3600.0`. A key the spec does not have is refused rather
than ignored (a typo such as `maximum_per_minut` must not run a campaign at full speed),
and so are the mistakes that span fields: two documents or none, two paces, an empty
target set, waves whose shares pass 100%, a bad cron expression or time zone.

Every refusal is `CampaignSpecError("<source>: <field>: <what is wrong>; <what to do>")`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from core import subjects
from core.campaigns.spec import CampaignSpec, GateAction, RuleAction, Targets
from core.errors import MahavishnuError
from core.tags import TagError, check_key, check_value
from core.units import parse_duration
from core.updates import naming
from mahavishnu.campaigns import windows
from projections.devices import TRANSPORTS

DURATION_SUFFIX = "_s"  # a spec field with it is a duration; the file names it without
PRESENCES = ("online", "offline")  # as mesh.q.devices.list filters presence
# An update downloads, installs and passes its health check within one command's timeout:
# the default 60 s of other commands is too short for that, so an update campaign that does
# not say gets this.
UPDATE_TIMEOUT_S = 1800.0
RATE_MIN = 1.0  # per minute: pace.py keeps 60 s of history, too little for a slower rate
# msgspec's words for types, as a campaign file's author knows them.
_TYPE_WORDS = {
    "float": "number",
    "int": "whole number",
    "str": "string",
    "array": "list",
    "object": "table",
    "null": "nothing",
}
_AT = re.compile(r"^(?P<message>.*) - at `\$(?P<path>[^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")


class CampaignSpecError(MahavishnuError):
    """A campaign file or its flags are wrong; the message names the source and the field."""


def load(path: Path) -> CampaignSpec:
    """The campaign that the TOML file at `path` describes; CampaignSpecError naming the field otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CampaignSpecError(
            f"{path}: cannot be read ({exc.strerror or exc}); give the path of a campaign file"
        ) from None
    except UnicodeDecodeError:
        raise CampaignSpecError(f"{path}: is not UTF-8 text; a campaign file is TOML") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CampaignSpecError(f"{path}: not valid TOML: {exc}") from None
    return parse(data, source=str(path))


def parse(data: dict[str, Any], *, source: str) -> CampaignSpec:
    """The campaign that `data` (a campaign file's tables) describes; CampaignSpecError naming the field otherwise.

    `source` names where `data` came from (the file's path, or "flags" for `campaign create`'s flags) at the start of
    each refusal.
    """
    try:
        converted = _convert(data, msgspec.inspect.type_info(CampaignSpec), "")
        try:
            spec = msgspec.convert(converted, CampaignSpec)
        except msgspec.ValidationError as exc:
            raise _refusal(*_field_of(str(exc), data)) from None
        first = next(_problems(spec), None)
        if first is not None:
            raise _refusal(*first)
        if spec.document.update is not None and "timeout" not in (data.get("execution") or {}):
            execution = msgspec.structs.replace(spec.execution, timeout_s=UPDATE_TIMEOUT_S)
            spec = msgspec.structs.replace(spec, execution=execution)
    except CampaignSpecError as refusal:
        raise CampaignSpecError(f"{source}: {refusal}") from None
    return spec


def _refusal(field: str, problem: str) -> CampaignSpecError:
    """One wrong field, before `parse` puts the source in front."""
    return CampaignSpecError(f"{field}: {problem}")


def _file_key(name: str) -> str:
    return name.removesuffix(DURATION_SUFFIX)


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _convert(value: Any, info: msgspec.inspect.Type, path: str) -> Any:
    """`value` with each duration as seconds under its spec name; CampaignSpecError for an unknown key, a bad duration.

    Anything of the wrong type is left as it is for msgspec.convert to refuse.
    """
    if isinstance(info, msgspec.inspect.UnionType):  # X | None: the struct inside, if any
        structs = [member for member in info.types if isinstance(member, msgspec.inspect.StructType)]
        return _convert(value, structs[0], path) if structs else value
    if isinstance(info, msgspec.inspect.ListType) and isinstance(value, list):
        return [_convert(item, info.item_type, _join(path, index)) for index, item in enumerate(value)]
    if not isinstance(info, msgspec.inspect.StructType) or not isinstance(value, dict):
        return value
    fields = {_file_key(field.encode_name): field for field in info.fields}
    converted: dict[str, Any] = {}
    for key, item in value.items():
        field = fields.get(key)
        if field is None:
            raise _refusal(_join(path, key), f"unknown key; known keys: {', '.join(fields)}")
        if field.encode_name.endswith(DURATION_SUFFIX):
            try:
                converted[field.encode_name] = parse_duration(item)
            except ValueError as exc:
                raise _refusal(_join(path, key), str(exc)) from None
        else:
            converted[key] = _convert(item, field.type, _join(path, key))
    return converted


def _field_of(error: str, data: dict[str, Any]) -> tuple[str, str]:
    """(the file's field, what is wrong) from msgspec's message, with the value the file gave."""
    match = _AT.match(error)
    message, path = (match["message"], match["path"]) if match else (error, "")
    # "$.execution.ttl_s" is the file's "execution.ttl".
    field = re.sub(r"(\w+)" + DURATION_SUFFIX + r"\b", r"\1", path.removeprefix("."))
    missing = _MISSING.match(message)
    if missing:
        return _join(field, _file_key(missing["field"])), "missing; it is required"
    text = re.sub(r"`([^`]+)`", _words, message)
    text = text[:1].lower() + text[1:]
    given = _value_at(data, field)
    if given is not _ABSENT and "got" not in text and repr(given) not in text:
        text += f", got {given!r}"
    choices = _choices(field)
    if choices:
        text += f"; one of {', '.join(choices)}"
    return field or "(the file)", text


def _words(types: re.Match[str]) -> str:
    """msgspec's "`float | null`" as "number or nothing"."""
    words = re.sub(r"\w+", lambda word: _TYPE_WORDS.get(word[0], word[0]), types[1])
    return words.replace(" | ", " or ")


def _choices(field: str) -> list[str]:
    """The values the enum at `field` (a path of the file) allows, if an enum is there."""
    info: msgspec.inspect.Type = msgspec.inspect.type_info(CampaignSpec)
    for part in re.findall(r"[^.\[\]]+", field):
        if isinstance(info, msgspec.inspect.UnionType):
            info = next((t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)), info)
        if isinstance(info, msgspec.inspect.ListType) and part.isdigit():
            info = info.item_type
        elif isinstance(info, msgspec.inspect.StructType):
            found = [f.type for f in info.fields if _file_key(f.encode_name) == part]
            if not found:
                return []
            info = found[0]
        else:
            return []
    if isinstance(info, msgspec.inspect.UnionType):
        info = next((t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)), info)
    if isinstance(info, msgspec.inspect.EnumType):
        return [str(member.value) for member in info.cls]
    return []


_ABSENT = object()


def _value_at(data: Any, field: str) -> Any:
    value = data
    for part in re.findall(r"[^.\[\]]+", field):
        key: str | int = int(part) if part.isdigit() and isinstance(value, list) else part
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return _ABSENT
    return _ABSENT if value is data or isinstance(value, dict | list) else value


def _problems(spec: CampaignSpec) -> Iterator[tuple[str, str]]:
    """The rules that span fields, or that the struct's types cannot say: (field, what is wrong) of each broken one."""
    if not spec.name.strip():
        yield "name", "is empty; name the campaign (operators see it in `campaign list`)"
    document = spec.document
    if document.kinds != 1:
        yield "document", "give exactly one of [document.command] (name, args), [document.desired] or [document.update]"
    if document.update is not None:
        for field, valid in (("name", naming.artifact_name), ("version", naming.artifact_version)):
            try:
                valid(getattr(document.update, field))
            except ValueError as exc:
                yield f"document.update.{field}", str(exc)
    if document.command is not None and not document.command.name.strip():
        yield "document.command.name", "is empty; name the command each device runs (e.g. ping)"
    if document.desired is not None and not document.desired:
        yield "document.desired", "is empty; give the desired state's keys and values"
    yield from _target_problems(spec.targets)
    pace = spec.pace
    if pace.maximum_per_minute is not None and pace.exponential is not None:
        yield "pace", "give maximum_per_minute or [pace.exponential], not both"
    rates = {"pace.maximum_per_minute": pace.maximum_per_minute}
    if pace.exponential is not None:
        rates["pace.exponential.base_per_minute"] = pace.exponential.base_per_minute
        rates["pace.exponential.maximum_per_minute"] = pace.exponential.maximum_per_minute
    for field, rate in rates.items():
        if rate is not None and rate < RATE_MIN:
            yield field, f"{rate:g} per minute is too slow: at least {RATE_MIN:g} per minute"
    exponential = pace.exponential
    if exponential and exponential.maximum_per_minute and exponential.maximum_per_minute < exponential.base_per_minute:
        yield "pace.exponential.maximum_per_minute", "is below base_per_minute; the rate only steps up from its base"
    yield from _wave_problems(spec)
    for index, rule in enumerate(spec.abort):
        if rule.action == RuleAction.ROLLBACK and document.command is not None:
            yield (
                f"abort[{index}].action",
                ("rollback undoes a desired state or an update; a command campaign's rule may cancel or pause"),
            )
    schedule = spec.schedule
    for field, moment in (("schedule.start", schedule.start), ("schedule.end", schedule.end)):
        if moment is not None and moment.utcoffset() is None:
            yield field, f"{moment.isoformat()} has no time zone; write its offset, e.g. {_example(moment)}"
    aware = [moment for moment in (schedule.start, schedule.end) if moment and moment.utcoffset() is not None]
    if len(aware) == 2 and aware[1] <= aware[0]:
        yield "schedule.end", "is not after schedule.start; a campaign must end after it starts"
    for index, window in enumerate(schedule.windows):
        for field, check, value in (
            ("cron", windows.check_cron, window.cron),
            ("timezone", windows.check_zone, window.timezone),
        ):
            try:
                check(value)
            except ValueError as exc:
                yield f"schedule.windows[{index}].{field}", str(exc)


def _example(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat() + "Z"


def _target_problems(targets: Targets) -> Iterator[tuple[str, str]]:
    filtered = bool(targets.tags) or any(
        value is not None for value in (targets.site, targets.transport, targets.presence)
    )
    if not targets.devices and not filtered:
        yield "targets", "is empty; list devices = [...] or filter by tags, site, transport or presence"
    if targets.devices and filtered:
        yield "targets", "give devices or a filter (tags, site, transport, presence), not both"
    for index, device in enumerate(targets.devices):
        try:
            subjects.token(device, what="device id")
        except ValueError as exc:
            yield f"targets.devices[{index}]", str(exc)
    if len(set(targets.devices)) != len(targets.devices):
        yield "targets.devices", "names a device twice; list each once"
    for key, value in targets.tags.items():
        try:
            check_value(check_key(key), value)
        except TagError as exc:
            yield f"targets.tags.{key}", str(exc)
    if targets.transport is not None and targets.transport not in TRANSPORTS:
        yield "targets.transport", f"{targets.transport!r} is no transport; one of {', '.join(TRANSPORTS)}"
    if targets.presence is not None and targets.presence not in PRESENCES:
        yield "targets.presence", f"{targets.presence!r} is no presence; one of {', '.join(PRESENCES)}"
    if targets.site is not None:
        try:
            subjects.token(targets.site, what="site name")
        except ValueError as exc:
            yield "targets.site", str(exc)


def _wave_problems(spec: CampaignSpec) -> Iterator[tuple[str, str]]:
    shares = 0.0
    for index, wave in enumerate(spec.waves):
        field = f"waves[{index}]"
        if wave.percent is not None and wave.tags:
            yield field, "give percent or tags, not both"
        shares += wave.percent or 0.0
        for key, value in wave.tags.items():
            try:
                check_value(check_key(key), value)
            except TagError as exc:
                yield f"{field}.tags.{key}", str(exc)
        if wave.on_success not in (GateAction.NEXT_WAVE, GateAction.PAUSE):
            yield f"{field}.on_success", f"{wave.on_success.value!r}: after success, next_wave or pause"
        if wave.on_error not in (GateAction.PAUSE, GateAction.ABORT):
            yield f"{field}.on_error", f"{wave.on_error.value!r}: after errors, pause or abort"
    if shares > 100:
        yield "waves", f"the waves' percent add up to {shares:g}%, over 100%; the last wave takes what is left"
