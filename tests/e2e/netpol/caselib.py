"""NetworkPolicy conformance cases (``netpol-case/v1``): load, substitute, run, compare.

A case is a list of steps (delete / apply / relabel, then expected connectivity matrices), see
/work/shared/netpol-cases/README.md. `run_case` drives any `Cluster` (the real lab, or the
single-node OVS harness of tests/integration) and returns human-readable mismatches; an empty
list means the case passed. The diagonal (a pod reaching itself) is skipped when the case says
``ignore_loopback``, as upstream does.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml


def _shared_cases_dir() -> Path:
    """The shared case corpus: $NETPOL_CASES_DIR, else ../shared/netpol-cases beside the repo."""
    if env := os.environ.get("NETPOL_CASES_DIR"):
        return Path(env)
    beside_repo = Path(__file__).resolve().parents[3].parent / "shared" / "netpol-cases"
    return beside_repo if beside_repo.is_dir() else Path("/work/shared/netpol-cases")


def _shared_antrea_cases_dir() -> Path:
    if env := os.environ.get("NETPOL_ANTREA_CASES_DIR"):
        return Path(env)
    return SHARED_CASES.parent / "netpol-cases-antrea"


SHARED_CASES = _shared_cases_dir()
OWN_CASES = Path(__file__).parent / "cases"
# Antrea-native policy cases (ClusterNetworkPolicy, Antrea NetworkPolicy, Tier, groups).
SHARED_ANTREA_CASES = _shared_antrea_cases_dir()
OWN_ANTREA_CASES = Path(__file__).parent / "cases-antrea"
ANTREA_ID_PREFIX = "antrea-"
ORDER = ["x/a", "x/b", "x/c", "y/a", "y/b", "y/c", "z/a", "z/b", "z/c"]
PROBEABLE = {"TCP", "UDP"}  # no SCTP sockets in this kernel


@dataclass
class Expect:
    protocol: str
    port: int
    matrix: dict[tuple[str, str], bool]
    # "." connected, "X" dropped, "R" rejected (Antrea-native cases tell the last two apart)
    marks: dict[tuple[str, str], str] = field(default_factory=dict)


@dataclass
class Step:
    description: str
    delete: str | list[tuple[str, str]] | None
    apply: list[dict[str, Any]]
    relabel_pods: list[dict[str, Any]]
    relabel_namespaces: list[dict[str, Any]]
    expect: list[Expect]


@dataclass
class Case:
    id: str
    slug: str
    name: str
    path: Path
    ignore_loopback: bool
    steps: list[Step] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.id}-{self.slug}"


def _marks(e: dict[str, Any]) -> dict[tuple[str, str], str]:
    rows = e["matrix"]
    if len(rows) != 9 or any(len(r) != 9 for r in rows):
        raise ValueError("matrix must be 9x9")
    if any(c not in ".XR" for r in rows for c in r):
        raise ValueError("matrix marks are . X R")
    return {(ORDER[i], ORDER[j]): rows[i][j] for i in range(9) for j in range(9)}


def _matrix(e: dict[str, Any]) -> dict[tuple[str, str], bool]:
    return {k: v == "." for k, v in _marks(e).items()}


def load_case(path: Path, id_prefix: str = "") -> Case:
    doc = yaml.safe_load(path.read_text())
    if doc.get("schema") != "netpol-case/v1":
        raise ValueError(f"{path}: not a netpol-case/v1 document")
    case = Case(
        id=id_prefix + str(doc["id"]),
        slug=str(doc.get("slug", path.stem)),
        name=str(doc.get("name", "")),
        path=path,
        ignore_loopback=bool(doc.get("ignore_loopback", True)),
    )
    for s in doc.get("steps") or []:
        delete = s.get("delete")
        if isinstance(delete, list):
            delete = [(d["namespace"], d["name"]) for d in delete]
        relabel = s.get("relabel") or {}
        case.steps.append(
            Step(
                description=str(s.get("description", "")),
                delete=delete,
                apply=list(s.get("apply") or []),
                relabel_pods=list(relabel.get("pods") or []),
                relabel_namespaces=list(relabel.get("namespaces") or []),
                expect=[
                    Expect(str(e["protocol"]).upper(), int(e["port"]), _matrix(e), _marks(e))
                    for e in s.get("expect") or []
                ],
            )
        )
    return case


def load_cases(*dirs: Path, id_prefix: str = "") -> list[Case]:
    out: list[Case] = []
    for d in dirs:
        if d.is_dir():
            out.extend(load_case(p, id_prefix) for p in sorted(d.glob("*.yaml")))
    return out


def antrea_cases() -> list[Case]:
    if not SHARED_ANTREA_CASES.is_dir() and os.environ.get("CI"):
        raise FileNotFoundError(f"shared Antrea-native cases not found at {SHARED_ANTREA_CASES}")
    return load_cases(SHARED_ANTREA_CASES, OWN_ANTREA_CASES, id_prefix=ANTREA_ID_PREFIX)


def all_cases() -> list[Case]:
    if not SHARED_CASES.is_dir() and os.environ.get("CI"):
        # CI always has shared/ beside the clone: a missing corpus must fail, not shrink the suite
        raise FileNotFoundError(f"shared NetworkPolicy cases not found at {SHARED_CASES}")
    return load_cases(SHARED_CASES, OWN_CASES)


_IP = re.compile(r"\{\{\s*ip\s+([a-z]/[a-z])\s*\}\}")
_SUPERNET = re.compile(r"\{\{\s*supernet\s+([a-z]/[a-z])\s+(\d+)\s*\}\}")


def substitute(obj: Any, ips: dict[str, str]) -> Any:
    """Expand ``{{ip NS/POD}}`` and ``{{supernet NS/POD LEN}}`` in every string of ``obj``."""
    if isinstance(obj, str):
        s = _IP.sub(lambda m: ips[m.group(1)], obj)
        return _SUPERNET.sub(
            lambda m: str(ipaddress.ip_network(f"{ips[m.group(1)]}/{m.group(2)}", strict=False)),
            s,
        )
    if isinstance(obj, list):
        return [substitute(v, ips) for v in obj]
    if isinstance(obj, dict):
        return {k: substitute(v, ips) for k, v in obj.items()}
    return obj


class Cluster(Protocol):
    """What running a case needs from an environment."""

    async def pod_ips(self) -> dict[str, str]: ...

    async def list_policies(self) -> list[tuple[str, str]]: ...

    async def apply_policy(self, policy: dict[str, Any]) -> None: ...

    async def delete_policy(self, namespace: str, name: str) -> None: ...

    async def relabel_pod(self, key: str, set_: dict[str, str], remove: list[str]) -> None: ...

    async def relabel_namespace(self, ns: str, set_: dict[str, str], remove: list[str]) -> None: ...

    async def settle(self) -> None:
        """Return once the changes made so far are realized (or long enough has passed)."""

    async def probe(self, protocol: str, port: int) -> dict[tuple[str, str], bool | str]:
        """Per pair: connected (bool), or its mark ("." connected, "X" dropped, "R" rejected)."""

    async def reset(self) -> None:
        """Back to the model's initial state: no policies, original labels."""


_WORDS = {".": "allowed", "X": "dropped", "R": "rejected"}


def mark_of(v: bool | str | None) -> str:
    """A probe cell as a matrix mark (``.``, ``X``, ``R``)."""
    if isinstance(v, str):
        return v
    return "." if v else "X"


def compare(
    expect: Expect, got: dict[tuple[str, str], bool | str], *, ignore_loopback: bool
) -> list[str]:
    """Mismatches. With marks on both sides, dropped and rejected are told apart."""
    out = []
    for (src, dst), want in sorted(expect.matrix.items()):
        if ignore_loopback and src == dst:
            continue
        have = got.get((src, dst))
        want_mark = expect.marks.get((src, dst), mark_of(want))
        if isinstance(have, str):
            ok = have == want_mark
            have_word = _WORDS.get(have, have)
            want_word = _WORDS[want_mark]
        else:
            ok = have == want
            have_word = "allowed" if have else "denied"
            want_word = "allowed" if want else "denied"
        if not ok:
            out.append(
                f"{expect.protocol}/{expect.port} {src} -> {dst}: expected {want_word}, "
                f"got {have_word}"
            )
    return out


def render(matrix: dict[tuple[str, str], bool | str]) -> str:
    return "\n".join("".join(mark_of(matrix.get((s, d))) for d in ORDER) + f"  {s}" for s in ORDER)


async def run_case(
    case: Case, cluster: Cluster, *, protocols: Iterable[str] = PROBEABLE
) -> list[str]:
    """Run every step; returns mismatches (empty = pass). Leaves its policies behind."""
    wanted = set(protocols)
    ips = await cluster.pod_ips()
    failures: list[str] = []
    for n, step in enumerate(case.steps, 1):
        if step.delete == "all":
            for ns, name in await cluster.list_policies():
                await cluster.delete_policy(ns, name)
        elif isinstance(step.delete, list):
            for ns, name in step.delete:
                await cluster.delete_policy(ns, name)
        for p in step.apply:
            await cluster.apply_policy(substitute(copy.deepcopy(p), ips))
        for r in step.relabel_pods:
            await cluster.relabel_pod(
                r["pod"], dict(r.get("set") or {}), list(r.get("remove") or [])
            )
        for r in step.relabel_namespaces:
            await cluster.relabel_namespace(
                r["namespace"], dict(r.get("set") or {}), list(r.get("remove") or [])
            )
        await cluster.settle()
        for e in step.expect:
            if e.protocol not in wanted:
                continue
            got = await cluster.probe(e.protocol, e.port)
            bad = compare(e, got, ignore_loopback=case.ignore_loopback)
            if bad:
                # A cluster may explain a wrong matrix (flows, conntrack), right away.
                diagnose = getattr(cluster, "diagnose", None)
                notes = await diagnose(e, got, case.ignore_loopback) if diagnose else ""
                failures.append(
                    f"{case.label} step {n} ({step.description or 'no description'}) "
                    f"{e.protocol}/{e.port}:\n  "
                    + "\n  ".join(bad)
                    + "\n"
                    + render(got)
                    + (f"\n{notes}" if notes else "")
                )
    return failures
