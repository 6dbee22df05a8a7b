"""Settings: one TOML file plus environment overrides, each setting declared once and checked on load.

    settings = settings_for(home, os.environ)  # $MAHAVISHNU_CONFIG or <home>/mahavishnu.toml, plus env
    settings = load_config(path, env)          # an explicit file (None: none) plus env

The file has the sections and keys of `Settings` (DEFAULT_TOML shows them all); every
key is optional. An environment variable `MAHAVISHNU_<SECTION>__<KEY>` (two
underscores) overrides one key and wins over the file: `MAHAVISHNU_SERVER__PORT=4333`,
`MAHAVISHNU_SERVER__HOSTS=a.example,10.0.0.5` (lists are comma-separated). Durations
are written "500ms", "30s", "2m", "1h", "7d" (or seconds) and held as float seconds;
sizes "512KB", "10GB", "1.5GiB" (or bytes) and held as int bytes (see core.units).

Each setting is declared once, in `settings` (type, bounds, default, description in one
msgspec annotation); `fields` derives from that how a value is read, checked and
written, `loading` reads a file and the environment, `defaults` writes the commented
default file. Every wrong value, unknown key and bad variable gives one message, all
raised together as one ConfigError; the setting structs also check themselves when
built in code.

Only the standard library and msgspec are used: a device agent loads this too.
"""

from typing import Any

from core.config.loading import CONFIG_FILE_NAME, ENV_PREFIX, home_dir, load_config, settings_for
from core.config.settings import (
    SSH_MAX_OUTPUT_LIMIT,
    CertsSettings,
    CodeSettings,
    HttpSettings,
    JetStreamSettings,
    LeafSettings,
    LoggingSettings,
    MeshSettings,
    MetricsSettings,
    MqttSettings,
    ServerSettings,
    Settings,
    ShellSettings,
    SshSettings,
)
from core.errors import ConfigError


def __getattr__(name: str) -> Any:
    # The commented default file loads and renders on first use only: every command imports
    # the settings, few print the file, and rendering it costs more than the rest of the import.
    if name in ("DEFAULT_TOML", "render_default_toml"):
        from core.config.defaults import render_default_toml

        return render_default_toml() if name == "DEFAULT_TOML" else render_default_toml
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CONFIG_FILE_NAME",
    "DEFAULT_TOML",
    "ENV_PREFIX",
    "SSH_MAX_OUTPUT_LIMIT",
    "CertsSettings",
    "CodeSettings",
    "ConfigError",
    "HttpSettings",
    "JetStreamSettings",
    "LeafSettings",
    "LoggingSettings",
    "MeshSettings",
    "MetricsSettings",
    "MqttSettings",
    "ServerSettings",
    "Settings",
    "ShellSettings",
    "SshSettings",
    "home_dir",
    "load_config",
    "render_default_toml",
    "settings_for",
]
