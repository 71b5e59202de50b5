"""Every exception class antrea defines derives from `antrea.errors.AntreaError`."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import antrea
from antrea.errors import AntreaError


def _exception_classes() -> list[type[BaseException]]:
    found: list[type[BaseException]] = []
    for info in pkgutil.walk_packages(antrea.__path__, "antrea."):
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if obj.__module__ == info.name and issubclass(obj, BaseException):
                found.append(obj)
    return found


def test_every_exception_derives_from_antrea_error():
    classes = _exception_classes()
    assert len(classes) > 20  # the walk found the tree, not an empty package
    strays = sorted(
        f"{c.__module__}.{c.__qualname__}" for c in classes if not issubclass(c, AntreaError)
    )
    assert not strays, strays


def test_builtin_bases_are_kept_for_callers_that_catch_them():
    from antrea.agent.config import ConfigError
    from antrea.agent.rtnl import NetlinkError

    assert issubclass(ConfigError, ValueError)
    assert issubclass(NetlinkError, OSError)
