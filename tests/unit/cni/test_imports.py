"""The plugin stays standard-library only and cheap to start.

Start-up time is pod start-up latency, so instead of timing it (flaky) these tests pin what an
invocation imports: nothing outside the standard library, and not even the expensive parts of it
(``json``/``re``/``enum``/``socket``/``typing``), checked with ``python -X importtime``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import antrea

SRC = str(Path(antrea.__file__).resolve().parent.parent)
FORBIDDEN = ("aiohttp", "kubernetes_asyncio", "pyroute2", "structlog", "msgpack", "yaml", "uvloop")
# Imported by `import json`/`import socket`/`import typing`/`import os`: ~9 ms per invocation.
EXPENSIVE = (
    "json", "re", "enum", "socket", "typing", "dataclasses", "asyncio", "subprocess", "os",
)  # fmt: skip
# What the plugin may add to a bare interpreter's imports: two C accelerators and tiny modules.
ALLOWED_STDLIB = {"__future__", "posix", "_socket", "_json", "abc", "_abc", "codecs"}
# The plugin's own package and the contract it shares with the agent (antrea.apis.cni).
CNI_MODULES = sorted(
    f"antrea.{pkg}.{p.stem}".replace(".__init__", "")
    for pkg in ("cni", "apis.cni")
    for p in (Path(SRC) / "antrea" / pkg.replace(".", "/")).glob("*.py")
)


def _imported_after(statement: str, *, isolated: bool = True) -> set[str]:
    flags = ["-I", "-S"] if isolated else []
    code = f"import sys; sys.path.insert(0, {SRC!r}); {statement}; print(' '.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, *flags, "-c", code], capture_output=True, text=True, check=True
    )
    return set(out.stdout.split())


@pytest.mark.parametrize("module", CNI_MODULES)
def test_no_cni_module_imports_third_party_packages(module):
    """Every antrea.cni and antrea.apis.cni module, imported with site on, pulls in no heavy dep."""
    loaded = _imported_after(f"import {module}", isolated=False)
    assert module in loaded
    assert not {m.split(".")[0] for m in loaded} & set(FORBIDDEN)


def test_plugin_avoids_the_expensive_stdlib_modules():
    loaded = _imported_after("import antrea.cni.plugin")
    assert not loaded & set(EXPENSIVE), sorted(loaded & set(EXPENSIVE))
    assert not {m.split(".")[0] for m in loaded} & set(FORBIDDEN)


def test_plugin_import_tree_is_small():
    """``-X importtime`` lists every module imported; the plugin's own tree stays tiny."""
    code = f"import sys; sys.path.insert(0, {SRC!r}); import antrea.cni.plugin"
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        check=True,
    )
    baseline = subprocess.run(
        [sys.executable, "-I", "-S", "-X", "importtime", "-c", "pass"],
        capture_output=True,
        text=True,
        check=True,
    )
    names = {line.rsplit("|", 1)[1].strip() for line in out.stderr.splitlines() if "|" in line}
    base = {line.rsplit("|", 1)[1].strip() for line in baseline.stderr.splitlines() if "|" in line}
    extra = names - base - {"import time:"}
    ours = {n for n in extra if n.startswith("antrea")}
    stdlib = extra - ours
    assert stdlib <= ALLOWED_STDLIB, sorted(stdlib - ALLOWED_STDLIB)
