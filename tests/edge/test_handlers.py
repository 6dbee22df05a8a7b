"""edge.handlers: the registry, and the example plugin of the module docstring really works."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any

import pytest

import edge.handlers
from edge.builtin import default_registry
from edge.errors import DuplicateHandler, EdgeError, InvalidArguments, UnknownCommand
from edge.handlers import Handler, HandlerContext, Registry


@dataclass(frozen=True)
class Nop:
    name: str = "nop"
    timeout_s: float = 1.0

    def validate(self, args: dict[str, Any]) -> None:
        pass

    async def run(self, args: dict[str, Any], context: HandlerContext) -> Any:
        return None


def test_register_get_names() -> None:
    registry = Registry([Nop(name="b"), Nop(name="a")])

    assert registry.names() == ["a", "b"]
    assert registry.get("a") == Nop(name="a")
    assert "b" in registry
    assert len(registry) == 2


def test_a_name_is_taken_once() -> None:
    registry = Registry([Nop()])

    with pytest.raises(DuplicateHandler) as caught:
        registry.register(Nop(timeout_s=5.0))

    assert "'nop' is already registered" in str(caught.value)
    assert registry.get("nop").timeout_s == 1.0


def test_unknown_names_say_what_the_device_knows() -> None:
    with pytest.raises(UnknownCommand) as caught:
        Registry([Nop(name="a"), Nop(name="b")]).get("reboot")

    assert str(caught.value) == "this device has no command 'reboot'; it knows a, b"
    assert isinstance(caught.value, EdgeError)


def test_default_registry_has_every_builtin() -> None:
    assert default_registry().names() == [
        "config.apply",
        "config.get",
        "config.set",
        "echo",
        "exec",
        "info",
        "ping",
        "sleep",
    ]


async def test_the_docstring_example_plugin_works(context: HandlerContext) -> None:
    doc = edge.handlers.__doc__ or ""
    example = textwrap.dedent(doc[doc.index("    @dataclass") :])
    namespace: dict[str, Any] = {"dataclass": dataclass, "Any": Any, "InvalidArguments": InvalidArguments}
    namespace["HandlerContext"] = HandlerContext
    exec(example, namespace)
    greet: Handler = namespace["Greet"]()
    registry = Registry([greet])

    handler = registry.get("greet")
    with pytest.raises(InvalidArguments):
        handler.validate({})
    handler.validate({"who": "world"})

    assert len(example.strip().splitlines()) <= 12
    assert await handler.run({"who": "world"}, context) == {"greeting": "hello world from pump-7"}
