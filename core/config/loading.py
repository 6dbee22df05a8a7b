"""Reading the settings: a TOML file, then `MAHAVISHNU_<SECTION>__<KEY>` variables, checked together.

Loading never stops at the first mistake: every wrong value, unknown key and bad variable
gives one message naming the file or the variable (and the nearest valid name for an
unknown one), and all of them are raised together as one ConfigError. What a key may
hold comes from its declaration in core.config.settings; nothing here names a setting.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from core.config.fields import settings_of
from core.config.settings import SECTIONS, Section, SectionError, Settings
from core.errors import ConfigError

__all__ = ["CONFIG_FILE_NAME", "ENV_PREFIX", "home_dir", "load_config", "settings_for"]

ENV_PREFIX: Final = "MAHAVISHNU_"
CONFIG_FILE_NAME: Final = "mahavishnu.toml"

# A given raw value: (value, where it came from, came from the environment).
_Raw = tuple[Any, str, bool]


def home_dir(env: Mapping[str, str] = os.environ) -> Path:
    """Return Mahavishnu's home directory: `$MAHAVISHNU_HOME`, else `./.mahavishnu`, absolute."""
    return Path(env.get("MAHAVISHNU_HOME") or ".mahavishnu").expanduser().resolve()


def settings_for(home: Path, env: Mapping[str, str]) -> Settings:
    """Return the settings of the mesh in `home`, as every command reads them.

    The file is `$MAHAVISHNU_CONFIG` when set, else `<home>/mahavishnu.toml`; a file that
    does not exist means defaults. `env` overrides keys as in `load_config`, whose
    ConfigError this raises.
    """
    explicit = env.get("MAHAVISHNU_CONFIG")
    return load_config(Path(explicit) if explicit else home / CONFIG_FILE_NAME, env)


def load_config(path: Path | None, env: Mapping[str, str] = os.environ) -> Settings:
    """Return the settings of the TOML file at `path` overridden by `MAHAVISHNU_<SECTION>__<KEY>` variables.

    `path` None or a file that does not exist means defaults (plus the environment).
    Raises ConfigError: at once when the file cannot be read or is not valid TOML
    (naming the file and the line), otherwise with one message per wrong value, unknown
    section or key (with the nearest valid name) and bad variable (naming it).
    """
    problems: list[str] = []
    raw: dict[str, dict[str, _Raw]] = {section: {} for section in SECTIONS}
    document = _read_toml(path) if path is not None else None
    if document:
        _take_file(document, str(path), raw, problems)
    _take_env(env, raw, problems)
    sections: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        built = _section(section, cls, raw[section], problems)
        if built is not None:
            sections[section] = built
    if problems:
        raise ConfigError(problems)
    return Settings(**sections)


def _keys(section: str) -> list[str]:
    return [setting.name for setting in settings_of(SECTIONS[section])]


def _read_toml(path: Path) -> dict[str, Any] | None:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        return None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}; fix that line"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from exc
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the configuration file: {exc.strerror or exc}"]) from exc


def _take_file(document: dict[str, Any], origin: str, raw: dict[str, dict[str, _Raw]], problems: list[str]) -> None:
    for name, table in document.items():
        if name not in SECTIONS:
            if isinstance(table, dict):
                problems.append(f"{origin}: unknown section [{name}]{_near(name, list(SECTIONS), '[{}]')}")
            else:
                problems.append(f"{origin}: unknown top-level key {name!r}; keys belong in a section{_home_of(name)}")
            continue
        if not isinstance(table, dict):
            problems.append(f"{origin}: {name} must be a section ([{name}]), got {table!r}")
            continue
        keys = _keys(name)
        for key, value in table.items():
            if key in keys:
                raw[name][key] = (value, origin, False)
            else:
                hint = _home_of(key) or _near(key, keys, f"{name}.{{}}")
                problems.append(f"{origin}: unknown key {name}.{key}{hint}")


def _take_env(env: Mapping[str, str], raw: dict[str, dict[str, _Raw]], problems: list[str]) -> None:
    for var, text in sorted(env.items()):
        if not var.startswith(ENV_PREFIX):
            continue
        rest = var[len(ENV_PREFIX) :].lower()
        if "__" not in rest:  # MAHAVISHNU_HOME and friends; flag MAHAVISHNU_SERVER_PORT only
            section, _, key = rest.partition("_")
            if section in SECTIONS and key in _keys(section):
                problems.append(f"{var}: use two underscores between section and key: {_var(section, key)}")
            continue
        section, key = rest.split("__", 1)
        if section not in SECTIONS:
            problems.append(f"{var}: unknown section {section!r}{_near(section, list(SECTIONS), '{}')}")
        elif key not in _keys(section):
            names = [_var(section, k) for k in _keys(section)]
            problems.append(f"{var}: unknown key {section}.{key}{_near(_var(section, key), names, '{}')}")
        else:
            raw[section][key] = (text, var, True)


def _section(section: str, cls: type[Section], given: dict[str, _Raw], problems: list[str]) -> Section | None:
    """Read and check one section's given values; None when any of them is wrong, each wrong one in `problems`.

    A value that cannot be read is left at its default for the section's own check, and
    that check's problems involving it are not reported again.
    """
    typed: dict[str, Any] = {}
    origins: dict[str, str] = {}
    unread: set[str] = set()
    for setting in settings_of(cls):
        if setting.name not in given:
            continue
        value, origin, from_env = given[setting.name]
        try:
            typed[setting.name] = setting.read(value, from_env=from_env)
            origins[setting.name] = origin
        except (ValueError, KeyError):
            problems.append(f"{origin}: {section}.{setting.name} must be {setting.expects}, got {value!r}")
            unread.add(setting.name)
    try:
        built = cls(**typed)
    except SectionError as refused:
        for keys, problem in refused.found:
            if not unread.intersection(keys):
                origin = next((origins[k] for k in keys if k in origins), "defaults")
                problems.append(f"{origin}: {section}.{keys[0]} {problem}")
        return None
    return None if unread else built


def _var(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section.upper()}__{key.upper()}"


def _near(name: str, options: list[str], template: str) -> str:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {template.format(close[0])}?"
    return "; valid: " + ", ".join(template.format(option) for option in options)


def _home_of(key: str) -> str:
    homes = [section for section in SECTIONS if key in _keys(section)]
    return f"; did you mean {key} in [{homes[0]}]?" if homes else ""
