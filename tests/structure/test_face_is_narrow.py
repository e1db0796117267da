"""relay.face hands tunnels/ functions and plain values, never a live relay object: a view
that held the registry or a Tunnel could reach into them by attribute, which import-linter
cannot see (issue 11: the reviewer's finding). What face loads is import-linter's to check
(a `forbidden` contract in pyproject.toml)."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import typing

from relay import face

# Plain values: frozen dataclasses, named tuples, enums, exceptions, constants.
# Minute (relay/traffic.py) is a mutable dataclass, but the snapshot hands out fresh
# copies (Traffic.history), so changing one changes nothing in the relay.
MUTABLE_BUT_COPIED = {"Minute"}
# The database port: a Protocol the tunnels app implements, not an object of the relay.
PORTS = {"Records"}


def exported() -> dict[str, object]:
    return {name: getattr(face, name) for name in face.__all__}


def is_plain_value_type(kind: type) -> bool:
    if dataclasses.is_dataclass(kind):
        return kind.__dataclass_params__.frozen  # type: ignore[attr-defined]
    return issubclass(kind, tuple | enum.Enum | Exception)


def test_every_class_it_exports_is_a_plain_value():
    classes = {
        name: kind
        for name, kind in exported().items()
        if inspect.isclass(kind) and name not in MUTABLE_BUT_COPIED | PORTS
    }
    assert "TunnelStatus" in classes  # the check sees the face's own types
    assert [name for name, kind in classes.items() if not is_plain_value_type(kind)] == []


def test_every_relay_class_in_its_functions_signatures_is_one_it_exports():
    """So the check above covers what the functions take and return too."""
    exports = exported()
    own = {id(kind) for kind in exports.values() if inspect.isclass(kind)}
    functions = {name: f for name, f in exports.items() if inspect.isfunction(f)}
    assert "register" in functions
    leaks = {}
    for name, function in functions.items():
        for hint in typing.get_type_hints(function).values():
            for kind in (hint, *typing.get_args(hint)):
                module = getattr(kind, "__module__", "")
                if inspect.isclass(kind) and module.startswith("relay") and id(kind) not in own:
                    leaks[name] = kind
    assert leaks == {}


def test_it_exports_neither_the_registry_nor_a_tunnel():
    names = set(face.__all__)
    assert names.isdisjoint({"Registry", "get_registry", "Tunnel", "Quota", "get_traffic"})
    assert "application" not in names  # relay.asgi's, so face loads no byte path
