"""Positional constructors for frozen slot dataclasses, for bulk decoding.

A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__`` (the generic
attribute path, since the class forbids assignment); decoding 15,000 rules builds ~75,000 such
objects. `positional_new` makes a constructor that creates the instance and stores every field
straight into its slot: about half the cost, and the very same object (equality, hash, repr
and pickling only see the slots). It takes every field positionally, in declaration order, with
no defaults and no ``__post_init__``: use it only where every field is at hand (decoders, the
rule cache), typed by a `cast` at the definition site.
"""

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
    env: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    for i, name in enumerate(names):
        env[f"_set{i}"] = cls.__dict__[name].__set__  # the slot's member descriptor
    args = ", ".join(f"a{i}" for i in range(len(names)))
    body = "".join(f"    _set{i}(o, a{i})\n" for i in range(len(names)))
    exec(f"def new({args}):\n    o = _new(_cls)\n{body}    return o\n", env)
    new: Callable[..., Any] = env["new"]
    new.__qualname__ = new.__name__ = f"new_{cls.__name__}"
    return new
