"""Device tags: short key=value labels that operators filter the fleet by (pure).

A tag is `key=value`: the key 1-32 of a-z, 0-9 and `_.-`, starting with a letter; the
value 1-64 of letters, digits and `_.:/@+-`. Why so narrow: a tag travels in a CLI
argument, a URL query (`?tag=rack=r7`), a JSON document and a SQL parameter, and must
read the same in all of them; no `=`, `,`, space or quote can hide inside one.

Tags are plain text in the streams and the read models, never sealed: they are not the
place for personal data (that goes in core.events.SEALED_DEVICE_FIELDS).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from core.errors import MahavishnuError

KEY_RULE = r"[a-z][a-z0-9_.-]{0,31}"
VALUE_RULE = r"[A-Za-z0-9_.:/@+-]{1,64}"
MAX_CHANGES = 32  # keys set and removed in one change
_KEY = re.compile(KEY_RULE)
_VALUE = re.compile(VALUE_RULE)


class TagError(MahavishnuError):
    """A tag, a tag key or a change of tags is malformed; the message names it and the rule."""


def check_key(key: str) -> str:
    """`key` if it can be a tag key; TagError naming it otherwise."""
    if not _KEY.fullmatch(key):
        raise TagError(
            f"tag key {key!r} is not allowed: use 1-32 of a-z, 0-9 and _.- starting with a letter (e.g. rack)"
        )
    return key


def check_value(key: str, value: str) -> str:
    """`value` if it can be the value of tag `key`; TagError naming both otherwise."""
    if not _VALUE.fullmatch(value):
        raise TagError(
            f"value {value!r} of tag {key!r} is not allowed: use 1-64 letters, digits or _.:/@+- (no spaces, = or ,)"
        )
    return value


def parse_tag(text: str) -> tuple[str, str]:
    """("k", "v") from "k=v"; TagError when it is no such pair or either half breaks the rules."""
    key, equals, value = text.partition("=")
    if not equals:
        raise TagError(f"tag {text!r} is not key=value (e.g. rack=r7)")
    return check_key(key), check_value(key, value)


def parse_tags(texts: Iterable[str]) -> dict[str, str]:
    """{"k": "v", ...} from ["k=v", ...]; TagError for a malformed tag or a key given twice."""
    tags: dict[str, str] = {}
    for text in texts:
        key, value = parse_tag(text)
        if key in tags:
            raise TagError(f"tag {key!r} is given twice ({key}={tags[key]} and {text}): give each key once")
        tags[key] = value
    return tags


def tag_change(set_tags: Mapping[str, str], remove: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """A checked change of a device's tags: (the tags to set, the keys to remove, sorted).

    TagError when a key or value breaks the rules, a key is both set and removed, the
    change is empty, or it touches more than MAX_CHANGES keys.
    """
    tags = {check_key(key): check_value(key, value) for key, value in set_tags.items()}
    removed = sorted({check_key(key) for key in remove})
    both = sorted(set(tags) & set(removed))
    if both:
        raise TagError(f"tag {', '.join(both)} is both set and removed: do one or the other")
    if not tags and not removed:
        raise TagError("nothing to change: give tags as key=value, or keys to remove")
    if len(tags) + len(removed) > MAX_CHANGES:
        raise TagError(f"{len(tags) + len(removed)} tags in one change: at most {MAX_CHANGES}")
    return dict(sorted(tags.items())), removed
