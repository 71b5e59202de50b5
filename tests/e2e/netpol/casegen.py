"""What the case generators share: a hand-written case -> its YAML document, with the expected
matrices computed by an oracle through the same loader the runner uses, and writing the files.

A case is ``{"id", "slug", "name", "steps": [...]}``; a step has ``apply`` (objects),
optionally ``description``, ``delete`` (``[{"namespace", "name"}]`` or ``"all"``) and
``relabel`` (``{"pods": [...], "namespaces": [...]}``), and ``probes`` (``(protocol, port)``).
Used by gen_cases.py (Kubernetes NetworkPolicies, `simulate.expected_steps`) and
gen_antrea_cases.py (Antrea-native policies, `simulate.expected_antrea_steps`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import caselib
import yaml

Oracle = Callable[[caselib.Case], list[dict[tuple[str, int], list[str]]]]


def build(
    case: dict[str, Any], out: Path, oracle: Oracle, *, marks: dict[str, str] | None = None
) -> dict[str, Any]:
    """The case's document (schema netpol-case/v1) with every step's matrices filled in."""
    steps = []
    for s in case["steps"]:
        step: dict[str, Any] = {
            k: s[k] for k in ("description", "delete", "apply", "relabel") if k in s
        }
        step["expect"] = [{"protocol": p, "port": port, "matrix": []} for p, port in s["probes"]]
        steps.append(step)
    doc: dict[str, Any] = {
        "schema": "netpol-case/v1",
        "id": case["id"],
        "slug": case["slug"],
        "name": case["name"],
        "origin": "antrea-python",
        "model": "xyz-abc-v1",
        "ignore_loopback": True,
    }
    if marks is not None:
        doc["marks"] = marks
    doc["steps"] = steps
    parsed = caselib.Case(case["id"], case["slug"], case["name"], out, True)
    for s in steps:
        parsed.steps.append(
            caselib.Step(
                description=s.get("description", ""),
                delete=s.get("delete")
                if s.get("delete") in (None, "all")
                else [(d["namespace"], d["name"]) for d in s["delete"]],
                apply=s.get("apply", []),
                relabel_pods=(s.get("relabel") or {}).get("pods", []),
                relabel_namespaces=(s.get("relabel") or {}).get("namespaces", []),
                expect=[caselib.Expect(e["protocol"], e["port"], {}) for e in s["expect"]],
            )
        )
    for s, got in zip(steps, oracle(parsed), strict=True):
        for e in s["expect"]:
            e["matrix"] = got[(e["protocol"], e["port"])]
    return doc


def write(
    cases: Iterable[dict[str, Any]],
    out: Path,
    oracle: Oracle,
    *,
    marks: dict[str, str] | None = None,
) -> None:
    """Write ``out/<id>-<slug>.yaml`` for every case (printing each path)."""
    out.mkdir(exist_ok=True)
    for case in cases:
        doc = build(case, out, oracle, marks=marks)
        path = out / f"{case['id']}-{case['slug']}.yaml"
        text = f"# {case['name']}\n" + yaml.safe_dump(doc, sort_keys=False, width=100)
        path.write_text(text)
        print(path)
