"""core.config: defaults, file, environment, every mistake reported at once, and all of it from one declaration."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated

import msgspec
import pytest
from msgspec import Meta

from core.config import (
    DEFAULT_TOML,
    CertsSettings,
    JetStreamSettings,
    ServerSettings,
    Settings,
    home_dir,
    load_config,
    render_default_toml,
    settings_for,
)
from core.config.fields import settings_of
from core.config.settings import SECTIONS
from core.errors import ConfigError, MahavishnuError

GiB = 1024**3


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mahavishnu.toml"
    path.write_text(text)
    return path


def problems_of(path: Path | None, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, env or {})
    return caught.value.problems


# -- Defaults and sources ------------------------------------------------------------


def test_defaults_without_a_file(tmp_path: Path) -> None:
    settings = load_config(None, {})

    assert settings == load_config(tmp_path / "absent.toml", {})
    assert settings == Settings()
    assert settings.mesh.name == "mahavishnu"
    assert settings.server.port == 4222
    assert settings.server.monitor_port == 8222
    assert settings.server.hosts == ("localhost", "127.0.0.1")
    assert settings.server.restart_backoff == 0.5
    assert settings.server.restart_backoff_max == 30.0
    assert settings.jetstream.max_memory == 256 * 1024**2
    assert settings.jetstream.max_file == 10 * GiB
    assert settings.jetstream.duplicate_window == 120.0
    assert settings.jetstream.commands_max_age == 7 * 86400
    assert settings.jetstream.events_max_age == 0.0
    assert settings.certs.algorithm == "ecdsa-p256"
    assert (settings.certs.ca_days, settings.certs.server_days, settings.certs.client_days) == (3650, 397, 365)
    assert (settings.logging.level, settings.logging.format) == ("info", "json")
    assert (settings.metrics.host, settings.metrics.port) == ("127.0.0.1", 9464)


def test_default_toml_matches_the_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, DEFAULT_TOML), {}) == Settings()


def test_file_values(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [mesh]
        name = "plant-7"
        [server]
        port = 4333
        hosts = ["hub.example", "10.0.0.5"]
        restart_backoff = "250ms"
        [jetstream]
        max_file = "1.5GiB"
        max_memory = 1048576
        replicas = 3
        commands_max_age = "1h30m"
        [certs]
        algorithm = "ed25519"
        [logging]
        format = "text"
        """,
    )

    settings = load_config(path, {})

    assert settings.mesh.name == "plant-7"
    assert settings.server.port == 4333
    assert settings.server.hosts == ("hub.example", "10.0.0.5")
    assert settings.server.restart_backoff == 0.25
    assert settings.jetstream.max_file == int(1.5 * GiB)
    assert settings.jetstream.max_memory == 1048576
    assert settings.jetstream.replicas == 3
    assert settings.jetstream.commands_max_age == 5400.0
    assert settings.certs.algorithm == "ed25519"
    assert settings.logging.format == "text"
    assert settings.metrics == Settings().metrics


def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nport = 4333\nhost = "0.0.0.0"\n[logging]\nlevel = "debug"\n')
    env = {
        "MAHAVISHNU_SERVER__PORT": "5222",
        "MAHAVISHNU_SERVER__HOSTS": "a.example, b.example,,",
        "MAHAVISHNU_JETSTREAM__DUPLICATE_WINDOW": "30s",
        "MAHAVISHNU_JETSTREAM__MAX_MEMORY": "64MB",
        "MAHAVISHNU_LOGGING__LEVEL": "WARNING",
        "MAHAVISHNU_HOME": "/elsewhere",
        "PATH": "/usr/bin",
    }

    settings = load_config(path, env)

    assert settings.server.port == 5222
    assert settings.server.host == "0.0.0.0"
    assert settings.server.hosts == ("a.example", "b.example")
    assert settings.jetstream.duplicate_window == 30.0
    assert settings.jetstream.max_memory == 64 * 1024**2
    assert settings.logging.level == "warning"


def test_environment_fixes_a_wrong_file_value(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 0\n")

    assert load_config(path, {"MAHAVISHNU_SERVER__PORT": "4333"}).server.port == 4333


def test_https_is_on_by_default_and_switched_by_file_or_environment(tmp_path: Path) -> None:
    assert Settings().http.tls is True
    assert load_config(write(tmp_path, "[http]\ntls = false\n"), {}).http.tls is False
    assert load_config(None, {"MAHAVISHNU_HTTP__TLS": "off"}).http.tls is False
    assert load_config(None, {"MAHAVISHNU_HTTP__TLS": "True"}).http.tls is True
    assert problems_of(None, {"MAHAVISHNU_HTTP__TLS": "maybe"}) == [
        "MAHAVISHNU_HTTP__TLS: http.tls must be true or false, got 'maybe'"
    ]
    assert problems_of(write(tmp_path, '[http]\ntls = "yes"\n')) == [
        f"{tmp_path / 'mahavishnu.toml'}: http.tls must be true or false, got 'yes'"
    ]


def test_settings_are_frozen() -> None:
    settings = Settings()

    with pytest.raises(AttributeError):
        settings.server.port = 1  # type: ignore[misc]


# -- Mistakes --------------------------------------------------------------------------


def test_every_wrong_field_is_reported_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [mesh]
        name = "Not A Name"
        [server]
        port = 70000
        hosts = []
        restart_backoff = "2m"
        [jetstream]
        replicas = 2
        max_memory = "lots"
        commands_max_age = "1m"
        [certs]
        server_days = 5000
        algorithm = "rsa"
        [metrics]
        port = "9464"
        """,
    )

    problems = problems_of(path)

    where = f"{path}: "
    # Per section: values that cannot be read, then each field's own problem in declaration order, then
    # the problems between fields.
    assert problems == [
        where + "mesh.name must be 1-63 lowercase letters, digits or '-', not starting with '-', got 'Not A Name'",
        where + "server.port must be between 1 and 65535, got 70000",
        where + "server.hosts must be a non-empty list of host names or addresses without spaces, got []",
        where + "server.restart_backoff_max (30s) must not be shorter than server.restart_backoff (2m)",
        where + 'jetstream.max_memory must be a size such as "512KB", "256MB", "10GB", "1.5GiB" or a number of bytes, '
        "got 'lots'",
        where + "jetstream.replicas must be 1, 3 or 5, got 2",
        where + "jetstream.commands_max_age (1m) must be 0s (keep forever) or at least jetstream.duplicate_window "
        "(2m); NATS refuses a duplicate window longer than a max age",
        where + "certs.algorithm must be one of ecdsa-p256, ed25519, got 'rsa'",
        where + "certs.server_days (5000) must not exceed certs.ca_days (3650); a certificate cannot outlive its CA",
        where + "metrics.port must be a whole number, got '9464'",
    ]


def test_config_error_is_one_line_per_problem_joined() -> None:
    error = ConfigError(["a is wrong", "b is wrong"])

    assert isinstance(error, MahavishnuError)
    assert str(error) == "a is wrong; b is wrong"


def test_unknown_names_come_with_the_nearest_valid_one(tmp_path: Path) -> None:
    path = write(tmp_path, "port = 1\n[server]\nprot = 1\nmax_memory = 5\nzzz = 1\n[loging]\nlevel = 'x'\n[qqq]\n")

    problems = problems_of(path)

    assert problems == [
        f"{path}: unknown top-level key 'port'; keys belong in a section; did you mean port in [server]?",
        f"{path}: unknown key server.prot; did you mean server.port?",
        f"{path}: unknown key server.max_memory; did you mean max_memory in [jetstream]?",
        f"{path}: unknown key server.zzz; valid: server.host, server.port, server.monitor_port, server.hosts, "
        "server.restart_backoff, server.restart_backoff_max, server.give_up_after, server.give_up_window, "
        "server.cluster, server.cluster_port",
        f"{path}: unknown section [loging]; did you mean [logging]?",
        f"{path}: unknown section [qqq]; valid: [mesh], [server], [jetstream], [certs], [logging], [metrics], [http],"
        " [code], [mqtt], [leaf], [shell], [ssh]",
    ]


def test_bad_toml_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 1\nhost = \n")

    (problem,) = problems_of(path)

    assert problem.startswith(f"{path}: not valid TOML: ")
    assert "line 3" in problem


def test_unreadable_file(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path)

    assert problem.startswith(f"{tmp_path}: cannot read the configuration file")


def test_bad_environment_variables_are_named(tmp_path: Path) -> None:
    env = {
        "MAHAVISHNU_SERVER__PORT": "http",
        "MAHAVISHNU_SERVER__MONITOR_PORT": "70000",
        "MAHAVISHNU_JETSTREAM__DUPLICATE_WINDOW": "soon",
        "MAHAVISHNU_SERVER__PROT": "1",
        "MAHAVISHNU_SERVR__PORT": "1",
        "MAHAVISHNU_METRICS_PORT": "1",
        "MAHAVISHNU_CERTS__ALGORITHM": "dsa",
    }

    problems = problems_of(None, env)

    assert problems == [
        "MAHAVISHNU_METRICS_PORT: use two underscores between section and key: MAHAVISHNU_METRICS__PORT",
        "MAHAVISHNU_SERVER__PROT: unknown key server.prot; did you mean MAHAVISHNU_SERVER__PORT?",
        "MAHAVISHNU_SERVR__PORT: unknown section 'servr'; did you mean server?",
        "MAHAVISHNU_SERVER__PORT: server.port must be a whole number, got 'http'",
        "MAHAVISHNU_SERVER__MONITOR_PORT: server.monitor_port must be between 0 and 65535 (0 disables), got 70000",
        'MAHAVISHNU_JETSTREAM__DUPLICATE_WINDOW: jetstream.duplicate_window must be a duration such as "500ms", '
        '"30s", "2m", "1h", "7d" or a number of seconds, got \'soon\'',
        "MAHAVISHNU_CERTS__ALGORITHM: certs.algorithm must be one of ecdsa-p256, ed25519, got 'dsa'",
    ]


def test_a_problem_between_two_fields_names_the_source_of_either(tmp_path: Path) -> None:
    problems = problems_of(None, {"MAHAVISHNU_SERVER__RESTART_BACKOFF": "1m"})

    assert problems == [
        "MAHAVISHNU_SERVER__RESTART_BACKOFF: server.restart_backoff_max (30s) must not be shorter than "
        "server.restart_backoff (1m)"
    ]


def test_structs_check_themselves() -> None:
    with pytest.raises(ConfigError) as caught:
        ServerSettings(port=0, monitor_port=0)

    assert caught.value.problems == [
        "server.port must be between 1 and 65535, got 0",
        "server.monitor_port must differ from server.port (0)",
    ]
    with pytest.raises(ConfigError):
        JetStreamSettings(duplicate_window=0)
    with pytest.raises(ConfigError):
        CertsSettings(algorithm="rsa")  # type: ignore[arg-type]


def test_settings_round_trip_through_msgspec() -> None:
    settings = Settings()

    assert msgspec.json.decode(msgspec.json.encode(settings), type=Settings) == settings


# -- Where the file is -----------------------------------------------------------------


def test_home_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    assert home_dir({}) == tmp_path.resolve() / ".mahavishnu"
    assert home_dir({"MAHAVISHNU_HOME": "rel/home"}) == tmp_path.resolve() / "rel" / "home"


def test_settings_for_reads_the_home_file_with_the_environment(tmp_path: Path) -> None:
    write(tmp_path, '[server]\nport = 4999\nhost = "0.0.0.0"\n')

    assert settings_for(tmp_path, {}).server.port == 4999
    settings = settings_for(tmp_path, {"MAHAVISHNU_SERVER__PORT": "5111"})
    assert (settings.server.port, settings.server.host) == (5111, "0.0.0.0")
    assert settings_for(tmp_path / "empty", {}) == Settings()


def test_settings_for_reads_mahavishnu_config_instead(tmp_path: Path) -> None:
    write(tmp_path, "[server]\nport = 4999\n")
    other = tmp_path / "other.toml"
    other.write_text("[server]\nport = 4888\n")

    assert settings_for(tmp_path, {"MAHAVISHNU_CONFIG": str(other)}).server.port == 4888
    # As the command line always did: a file that does not exist means defaults.
    assert settings_for(tmp_path, {"MAHAVISHNU_CONFIG": str(tmp_path / "nope.toml")}) == Settings()


def test_settings_for_names_a_broken_file(tmp_path: Path) -> None:
    write(tmp_path, "[server]\nport = 0\n")

    with pytest.raises(ConfigError) as caught:
        settings_for(tmp_path, {})

    assert caught.value.problems == [f"{tmp_path / 'mahavishnu.toml'}: server.port must be between 1 and 65535, got 0"]


# -- Declared once: the checks, the messages and the default file come from the declarations


def declared() -> dict[str, list[str]]:
    return {section: [setting.name for setting in settings_of(cls)] for section, cls in SECTIONS.items()}


def test_the_default_file_shows_every_declared_setting_at_its_default(tmp_path: Path) -> None:
    document = tomllib.loads(DEFAULT_TOML)

    assert {section: list(table) for section, table in document.items()} == declared()
    assert load_config(write(tmp_path, DEFAULT_TOML), {}) == Settings()
    assert render_default_toml() == DEFAULT_TOML


def test_readme_shows_the_generated_default_file() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()

    assert f"```toml\n{DEFAULT_TOML}```\n" in readme, "paste render_default_toml() into README's Configuration"


def test_every_setting_can_be_set_from_the_environment_as_the_default_file_writes_it() -> None:
    env: dict[str, str] = {}
    for section, cls in SECTIONS.items():
        for setting in settings_of(cls):
            value = tomllib.loads(f"v = {setting.written(setting.default)}")["v"]
            text = ",".join(value) if isinstance(value, list) else str(value).lower() if value is True else str(value)
            env[f"MAHAVISHNU_{section.upper()}__{setting.name.upper()}"] = text

    assert load_config(None, env) == Settings()


def test_the_words_for_bounds_come_from_the_declarations() -> None:
    assert problems_of(None, {"MAHAVISHNU_CODE__POLL_INTERVAL": "0s", "MAHAVISHNU_CODE__INDEX_WORKERS": "0"}) == [
        "MAHAVISHNU_CODE__POLL_INTERVAL: code.poll_interval must be more than 0s, got 0s",
        "MAHAVISHNU_CODE__INDEX_WORKERS: code.index_workers must be at least 1, got 0",
    ]
    assert problems_of(None, {"MAHAVISHNU_JETSTREAM__MAX_FILE": "0", "MAHAVISHNU_CODE__POLL_JITTER": "1.5"}) == [
        "MAHAVISHNU_JETSTREAM__MAX_FILE: jetstream.max_file must be more than 0 bytes, got 0B",
        "MAHAVISHNU_CODE__POLL_JITTER: code.poll_jitter must be a fraction of the interval from 0 to 1, got 1.5",
    ]
    assert problems_of(None, {"MAHAVISHNU_LOGGING__LEVEL": "loud"}) == [
        "MAHAVISHNU_LOGGING__LEVEL: logging.level must be one of debug, info, warning, error, got 'loud'"
    ]


def test_structs_built_in_code_check_their_types_too() -> None:
    with pytest.raises(ConfigError) as caught:
        ServerSettings(port="4222", hosts=("a b",))  # type: ignore[arg-type]

    assert caught.value.problems == [
        "server.port must be a whole number, got '4222'",
        "server.hosts must be a non-empty list of host names or addresses without spaces, got ['a b']",
    ]


class _Undescribed(msgspec.Struct, frozen=True):
    size: int = 1


class _Unworded(msgspec.Struct, frozen=True):
    name: Annotated[str, Meta(pattern="^a", description="a name")] = "a"


class _Unknown(msgspec.Struct, frozen=True):
    table: Annotated[dict[str, int], Meta(description="a table")] = {}


class _Required(msgspec.Struct, frozen=True):
    port: Annotated[int, Meta(description="a port")]


@pytest.mark.parametrize(
    ("section", "words"),
    [
        (_Undescribed, "declare its description"),
        (_Unworded, "a pattern or a length needs the words for it"),
        (_Unknown, "has no reader"),
        (_Required, "declare its default"),
    ],
)
def test_a_setting_declared_incompletely_is_refused(section: type[msgspec.Struct], words: str) -> None:
    with pytest.raises(TypeError, match=words):
        settings_of(section)
