"""Positional constructors for frozen slot dataclasses, for bulk decoding.

A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__`` (the generic
attribute path, since the class forbids assignment); decoding 15,000 rules builds ~75,000 such
objects. `positional_new` makes a constructor that builds the instance as a *builder*: a plain
class with the very same ``__slots__`` (so the same memory layout) whose attribute stores are
the interpreter's fast slot stores, then makes it an instance of the dataclass by assigning
``__class__`` (allowed between classes of identical layout; checked once when the constructor
is made; bases may only be slot-free classes without attribute hooks, which the builder then
derives from as well). About a third of the frozen ``__init__``'s cost for a 10-field rule, and
the very same object (type, equality, hash, repr and pickling only see the class and the
slots). It takes every field positionally, in declaration order, with no defaults and no
``__post_init__``: use it only where every field is at hand (decoders, the rule cache), typed
by a `cast` at the definition site."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any


def positional_new(cls: type[Any]) -> Callable[..., Any]:
    """`cls`'s fields, positionally, straight into its slots (see the module docstring)."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} is not a dataclass")
    names = [f.name for f in dataclasses.fields(cls)]
    slots = getattr(cls, "__slots__", ())
    if list(slots) != names or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: needs slots=True, fields only, no __post_init__")
    if any(not f.init for f in dataclasses.fields(cls)):
        raise TypeError(f"{cls.__name__}: every field must be an __init__ field")
    for base in cls.__mro__[1:-1]:  # (e.g. the flow actions' `Action`: ``__slots__ = ()``)
        own = vars(base)
        if own.get("__slots__", None) != () or {"__setattr__", "__new__"} & own.keys():
            raise TypeError(f"{cls.__name__}: its bases must add no slots nor attribute hooks")
    # the same bases: between classes of the same base, __class__ assignment compares the slots
    builder = type(f"_{cls.__name__}Builder", cls.__bases__, {"__slots__": tuple(names)})
    env: dict[str, Any] = {"_new": object.__new__, "_cls": cls, "_builder": builder}
    args = ", ".join(f"a{i}" for i in range(len(names)))
    body = "".join(f"    o.{name} = a{i}\n" for i, name in enumerate(names))
    exec(
        f"def new({args}):\n    o = _new(_builder)\n{body}    o.__class__ = _cls\n    return o\n",
        env,
    )
    new: Callable[..., Any] = env["new"]
    new.__qualname__ = new.__name__ = f"new_{cls.__name__}"
    probe = new(*[None] * len(names))  # a layout the class cannot take raises TypeError here
    if type(probe) is not cls:
        raise TypeError(f"{cls.__name__}: cannot be built through a slot builder")
    return new
