"""The commented default mahavishnu.toml, written from the declarations in core.config.settings.

Every section and key appears with its default value and its description; a Literal
setting also lists its choices. Its text (core.config.DEFAULT_TOML) is what README's Configuration section
shows (tests/core/test_config.py checks both that and that it loads back as `Settings()`).
"""

from __future__ import annotations

import textwrap
from typing import Final

from core.config.fields import settings_of
from core.config.settings import SECTIONS

__all__ = ["render_default_toml"]

_COMMENT_COLUMN: Final = 30  # where comments start, counting from 1
_WIDTH: Final = 100
_HEADER: Final = """\
# mahavishnu.toml: every key is optional, and shown here with its default.
# MAHAVISHNU_<SECTION>__<KEY> overrides one, e.g. MAHAVISHNU_SERVER__PORT=4333 (lists comma-separated).
# Durations: "500ms", "30s", "2m", "1h", "7d" or seconds; sizes: "512KB", "256MB", "10GB", "1.5GiB" or bytes.
"""


def render_default_toml() -> str:
    """Return the default configuration file: each [section] and key, with its default and its description."""
    lines = [_HEADER.rstrip("\n")]
    for section, cls in SECTIONS.items():
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        lines += ["", *_commented(f"[{section}]", summary)]
        for setting in settings_of(cls):
            note = setting.description
            if setting.choices is not None:
                note += f": {setting.rule}"
            lines += _commented(f"{setting.name} = {setting.written(setting.default)}", note)
    return "\n".join(lines) + "\n"


def _commented(line: str, comment: str) -> list[str]:
    """`line` with `comment` at the comment column, wrapped onto further lines aligned with it."""
    start = max(_COMMENT_COLUMN, len(line) + 2)
    wrapped = textwrap.wrap(comment, width=max(_WIDTH - start - 2, 40)) or [""]
    return [f"{line.ljust(start - 1)}# {wrapped[0]}"] + [f"{'':<{_COMMENT_COLUMN - 1}}# {more}" for more in wrapped[1:]]
