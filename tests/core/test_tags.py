"""Device tags: what a key and a value may be, parsing k=v, and a checked change."""

from __future__ import annotations

import pytest

from core.tags import MAX_CHANGES, TagError, parse_tag, parse_tags, tag_change


@pytest.mark.parametrize(
    ("text", "pair"),
    [
        ("rack=r7", ("rack", "r7")),
        ("env=prod", ("env", "prod")),
        ("hw.rev=2024-b", ("hw.rev", "2024-b")),
        ("owner_team=ops@north", ("owner_team", "ops@north")),
        ("path=/srv/a:b+c", ("path", "/srv/a:b+c")),
        ("k" * 32 + "=" + "v" * 64, ("k" * 32, "v" * 64)),
    ],
)
def test_a_tag_is_key_equals_value(text: str, pair: tuple[str, str]) -> None:
    assert parse_tag(text) == pair


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("rack", "is not key=value"),
        ("=r7", "tag key '' is not allowed"),
        ("Rack=r7", "tag key 'Rack'"),
        ("7rack=r7", "starting with a letter"),
        ("k" * 33 + "=v", "1-32"),
        ("rack=", "value '' of tag 'rack'"),
        ("rack=r 7", "no spaces"),
        ("rack=r7=8", "value 'r7=8'"),
        ("rack=a,b", "value 'a,b'"),
        ("rack=" + "v" * 65, "1-64"),
        ("rack=rä", "value 'rä'"),
    ],
)
def test_a_malformed_tag_is_named_with_the_rule(text: str, words: str) -> None:
    with pytest.raises(TagError) as refused:
        parse_tag(text)
    assert words in str(refused.value)


def test_a_key_given_twice_is_refused() -> None:
    assert parse_tags(["rack=r7", "env=prod"]) == {"rack": "r7", "env": "prod"}
    with pytest.raises(TagError, match="given twice"):
        parse_tags(["rack=r7", "rack=r8"])


def test_a_change_is_checked_and_sorted() -> None:
    assert tag_change({"rack": "r7", "env": "prod"}, ["old", "b", "old"]) == (
        {"env": "prod", "rack": "r7"},
        ["b", "old"],
    )
    assert tag_change({}, ["old"]) == ({}, ["old"])


@pytest.mark.parametrize(
    ("tags", "remove", "words"),
    [
        ({}, [], "nothing to change"),
        ({"rack": "r7"}, ["rack"], "both set and removed"),
        ({"rack": "r 7"}, [], "value 'r 7'"),
        ({}, ["Bad"], "tag key 'Bad'"),
        ({f"k{n}": "v" for n in range(MAX_CHANGES)}, ["one-more"], f"at most {MAX_CHANGES}"),
    ],
)
def test_a_bad_change_is_refused(tags: dict[str, str], remove: list[str], words: str) -> None:
    with pytest.raises(TagError) as refused:
        tag_change(tags, remove)
    assert words in str(refused.value)
