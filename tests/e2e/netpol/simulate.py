"""Run a case's steps against the oracle (no network): the expected matrices, recomputed."""

from __future__ import annotations

import copy
from typing import Any

import caselib
import oracle

DEFAULT_IPS = {
    f"{ns}/{p}": f"10.244.{i + 1}.{(j + 1) * 10}"
    for i, ns in enumerate("xyz")
    for j, p in enumerate("abc")
}


def _relabel(m: oracle.Model, step: Any) -> None:
    """Apply a step's pod and namespace relabelling to the model."""
    targets = [(m.pod_labels[r["pod"]], r) for r in step.relabel_pods]
    targets += [(m.ns_labels[r["namespace"]], r) for r in step.relabel_namespaces]
    for labels, r in targets:
        for k in r.get("remove") or []:
            labels.pop(k, None)
        labels.update(r.get("set") or {})


def expected_steps(
    case: Any, ips: dict[str, str] | None = None
) -> list[dict[tuple[str, int], list[str]]]:
    """Per step, {(protocol, port): matrix rows} as the oracle computes them."""
    m = oracle.Model(ips=dict(ips or DEFAULT_IPS))
    policies: dict[tuple[str, str], dict[str, Any]] = {}
    out = []
    for step in case.steps:
        if step.delete == "all":
            policies.clear()
        elif isinstance(step.delete, list):
            for key in step.delete:
                policies.pop(key, None)
        for raw in step.apply:
            p = caselib.substitute(copy.deepcopy(raw), m.ips)
            policies[(p["metadata"].get("namespace", "default"), p["metadata"]["name"])] = p
        _relabel(m, step)
        out.append(
            {
                (e.protocol, e.port): oracle.matrix(m, list(policies.values()), e.protocol, e.port)
                for e in step.expect
            }
        )
    return out


def expected_antrea_steps(
    case: Any, ips: dict[str, str] | None = None
) -> list[dict[tuple[str, int], list[str]]]:
    """Like `expected_steps` with Antrea-native objects too (`antrea_oracle`; . X R marks).

    Objects are keyed by (kind, namespace, name): applying the same key replaces the object.
    """
    import antrea_oracle

    m = oracle.Model(ips=dict(ips or DEFAULT_IPS))
    objects: dict[tuple[str, str, str], dict[str, Any]] = {}
    out = []
    for step in case.steps:
        if step.delete == "all":
            objects = {k: v for k, v in objects.items() if k[0] != "NetworkPolicy/k8s"}
        elif isinstance(step.delete, list):
            for ns, name in step.delete:
                objects.pop(("NetworkPolicy/k8s", ns, name), None)
        for raw in step.apply:
            p = caselib.substitute(copy.deepcopy(raw), m.ips)
            kind = p.get("kind", "NetworkPolicy")
            if not str(p.get("apiVersion", "")).startswith("crd.antrea.io/"):
                kind = "NetworkPolicy/k8s"
            objects[(kind, p["metadata"].get("namespace", ""), p["metadata"]["name"])] = p
        _relabel(m, step)
        out.append(
            {
                (e.protocol, e.port): antrea_oracle.matrix(
                    m, list(objects.values()), e.protocol, e.port
                )
                for e in step.expect
            }
        )
    return out
