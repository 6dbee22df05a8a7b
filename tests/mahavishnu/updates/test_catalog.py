"""Which artifacts exist, folded from their events, and how operators name them (pure)."""

from __future__ import annotations

import pytest

from core.events import ArtifactAdded, ArtifactRemoved
from mahavishnu.updates.catalog import fold, parse_depends, parse_ref


def added(name: str, version: str, length: int = 10) -> ArtifactAdded:
    return ArtifactAdded(name=name, version=version, device_type="rpi4", length=length, sha256="ab" * 32, actor="olga")


def test_the_fold_keeps_what_was_added_and_not_removed_in_the_order_added() -> None:
    events = [
        added("app", "1"),
        added("app", "2"),
        added("base", "1"),
        ArtifactRemoved(name="app", version="1"),
        added("app", "1", length=20),  # added again after its removal: a new artifact, last in the list
        ArtifactRemoved(name="nothing", version="9"),  # bytes without an event, cleared: nothing to drop
    ]
    artifacts = fold(events)
    assert list(artifacts) == ["app/2", "base/1", "app/1"]
    assert (artifacts["app/1"].length, artifacts["app/1"].added_by, artifacts["app/1"].ref) == (20, "olga", "app@1")


def test_refs_and_dependencies_are_checked() -> None:
    assert parse_ref("app@1.4.2") == ("app", "1.4.2")
    assert parse_depends(["base@2", "libc"]) == ("base@2", "libc")
    for bad, said in (("app", "NAME@VERSION"), ("App@1", "artifact name 'App'"), ("app@", "artifact version ''")):
        with pytest.raises(ValueError, match=said):
            parse_ref(bad)
    with pytest.raises(ValueError, match="artifact name 'Base'"):
        parse_depends(["Base"])
