"""One error tree: every exception class of ours derives from MahavishnuError and is drawn in core.errors' docstring.

The drawing is checked against the code both ways: each class defined in our packages
appears once, under a base it really has, with the module it lives in; and each name
drawn is such a class. A new error class without its line in the tree fails here.
"""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil
import re
from dataclasses import dataclass

from nats.micro.request import ServiceError

from core import errors
from core.errors import MahavishnuError, NoAnswer, ServiceRefusal

PACKAGES = ("core", "certs", "edge", "projections", "mahavishnu")
# "    │   ├── StoreUnavailable     core.errors     nobody answered: ..."
LINE = re.compile(r"^    (?P<branch>(?:[│ ]   )*(?:[├└]── )?)(?P<name>\w+) {2,}(?P<module>[\w.]+) {2,}\S")


@dataclass(frozen=True)
class Drawn:
    name: str
    module: str
    parent: str | None  # the name it is drawn under


def drawn_tree() -> list[Drawn]:
    """The classes drawn in core.errors' docstring, each with the one it is drawn under."""
    assert errors.__doc__ is not None
    drawn: list[Drawn] = []
    path: list[str] = []  # the names on the way down to the current line
    for line in errors.__doc__.splitlines():
        match = LINE.match(line)
        if match is None:
            continue
        depth = len(match["branch"]) // 4
        del path[depth:]
        drawn.append(Drawn(match["name"], match["module"], path[-1] if path else None))
        path.append(match["name"])
    return drawn


def defined_exceptions() -> dict[str, type[BaseException]]:
    """Every exception class defined (not imported) in a module of our packages, by `module.Name`."""
    found: dict[str, type[BaseException]] = {}
    for root in PACKAGES:
        package = importlib.import_module(root)
        names = [root, *(m.name for m in pkgutil.walk_packages(package.__path__, f"{root}."))]
        for name in names:
            module = importlib.import_module(name)
            for attribute, value in vars(module).items():
                if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == name:
                    found[f"{name}.{attribute}"] = value
    return found


def test_the_tree_has_one_root_and_names_every_class_once() -> None:
    drawn = drawn_tree()
    assert [d.name for d in drawn if d.parent is None] == ["MahavishnuError"]
    names = [d.name for d in drawn]
    assert len(names) == len(set(names)), "a class is drawn twice"


def test_every_exception_class_of_ours_derives_from_mahavishnu_error() -> None:
    outside = sorted(where for where, cls in defined_exceptions().items() if not issubclass(cls, MahavishnuError))
    assert outside == []


def test_every_exception_class_of_ours_is_drawn_where_it_lives() -> None:
    drawn = {f"{d.module}.{d.name}" for d in drawn_tree()}
    defined = set(defined_exceptions())
    assert sorted(defined - drawn) == [], "defined but not drawn in core.errors (or drawn with another module)"
    assert sorted(drawn - defined) == [], "drawn in core.errors but not defined there"


def test_every_class_is_drawn_under_one_of_its_own_bases() -> None:
    classes = {cls.__name__: cls for cls in defined_exceptions().values()}
    wrong = [
        f"{d.name} is drawn under {d.parent}, not under one of its bases {classes[d.name].__bases__}"
        for d in drawn_tree()
        if d.parent is not None and classes[d.parent] not in classes[d.name].__bases__
    ]
    assert wrong == []


def test_a_service_refusal_is_both_ours_and_a_micro_service_error() -> None:
    refusal = NoAnswer(503, "no shell broker answers: is `mahavishnu up` running?")
    assert isinstance(refusal, MahavishnuError) and isinstance(refusal, ServiceError)
    assert (refusal.code, refusal.description, refusal.status) == ("503", str(refusal), 503)
    assert refusal.args == (str(refusal),)
    assert refusal != NoAnswer(503, str(refusal)) and len({refusal, refusal}) == 1  # an exception, not a value
    assert repr(refusal) == "NoAnswer(503, 'no shell broker answers: is `mahavishnu up` running?')"
    assert isinstance(pickle.loads(pickle.dumps(ServiceRefusal(404, "no thing"))), ServiceRefusal)
