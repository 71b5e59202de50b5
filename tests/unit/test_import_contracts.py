"""The import contracts of pyproject.toml (the layering of docs/design/architecture.md) hold,
and each one fails when broken.

Each case copies the package to a temporary directory, adds one forbidden import to one module
of the copy and runs ``lint-imports`` for that contract alone against the copy: the contract
must be reported broken, naming the added import. Every contract has a case.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = REPO / "pyproject.toml"
LINT = Path(sys.executable).parent / "lint-imports"

# contract id -> (module file under src/antrea, the import that breaks it)
BREAKS = {
    "layers": ("util/aio.py", "import antrea.k8s.resources"),
    "agent-controller": ("agent/config.py", "import antrea.controller.config"),
    "antctl": ("antctl/output.py", "import antrea.agent.config"),
    "apis-pure": ("apis/controlplane/types.py", "import antrea.util.logging"),
    "ovs-no-kubernetes": ("ovs/ovsctl.py", "import kubernetes_asyncio"),
    "cni-stdlib": ("cni/client.py", "import antrea.util.atomicfile"),
    "testbed": ("k8s/client.py", "import antrea.testbed.lab.netns"),
}


def _contract_ids() -> set[str]:
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
    return {c["id"] for c in config["contracts"]}


def _lint(src: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    args = [str(LINT), "--no-cache", "--no-logo", str(PYPROJECT)]
    for c in contracts:
        args += ["--contract", c]
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=src, check=False)


def test_every_contract_has_a_breaking_case() -> None:
    assert _contract_ids() == set(BREAKS)


def test_the_tree_keeps_every_contract() -> None:
    out = _lint(REPO / "src")
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"Contracts: {len(BREAKS)} kept, 0 broken." in out.stdout


@pytest.mark.parametrize("contract", sorted(BREAKS))
def test_contract_fails_when_broken(contract: str, tmp_path: Path) -> None:
    module, statement = BREAKS[contract]
    src = tmp_path / "src"
    shutil.copytree(
        REPO / "src" / "antrea",
        src / "antrea",
        ignore=shutil.ignore_patterns("__pycache__", "antrea-cni"),
    )
    # Unchanged, the copy keeps the contract: the failure below is the added import's.
    assert _lint(src, contract).returncode == 0
    target = src / "antrea" / module
    target.write_text(target.read_text() + f"\n{statement}  # added by the test\n")
    out = _lint(src, contract)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "BROKEN" in out.stdout and "Contracts: 0 kept, 1 broken." in out.stdout
    importer = "antrea." + module.removesuffix(".py").replace("/", ".")
    imported = statement.split()[1]
    assert f"{importer} -> {imported}" in out.stdout, out.stdout
