"""What a lab wrote into an API server it did not start (`antrea lab up --kubeconfig`).

`antrea lab down` removes everything a lab created; with an external API server that includes
API objects: the lab's Node objects and their Leases, every pod bound to those nodes (they ran
on the lab's kubelets and cannot run anywhere else), and the namespaces the lab created
(``kube-node-lease`` when it was missing, the pod model's ``x``/``y``/``z`` when the lab's
tooling created them). Namespaces are journalled in ``<lab>/external.jsonl`` when created, so a
namespace that existed before the lab is never deleted.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import structlog

from antrea.k8s.errors import KubeError
from antrea.testbed.lab.kube import KubeClient
from antrea.testbed.lab.state import LabSpec

log = structlog.get_logger(__name__)

JOURNAL = "external.jsonl"
FORGET_TIMEOUT = 60.0
LEASE_NAMESPACE = "kube-node-lease"


def record_namespaces(lab_dir: Path, names: list[str]) -> None:
    """Journal namespaces the lab created (one JSON object per line, appended)."""
    if not names:
        return
    with (lab_dir / JOURNAL).open("a") as f:
        for name in names:
            f.write(json.dumps({"kind": "Namespace", "name": name}) + "\n")


def journalled_namespaces(lab_dir: Path) -> list[str]:
    try:
        lines = (lab_dir / JOURNAL).read_text().splitlines()
    except OSError:
        return []
    out: list[str] = []
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if doc.get("kind") == "Namespace" and doc.get("name") not in out:
            out.append(str(doc["name"]))
    return out


async def _forget(spec: LabSpec) -> list[str]:
    removed: list[str] = []
    names = set(spec.node_names())
    async with KubeClient.from_kubeconfig(spec.kubeconfig) as client:
        pods = (await client.list("/api/v1/pods")).get("items") or []
        for pod in pods:
            if (pod.get("spec") or {}).get("nodeName") in names:
                md = pod["metadata"]
                await client.delete(f"/api/v1/namespaces/{md['namespace']}/pods/{md['name']}",
                                    grace_seconds=0)  # fmt: skip
                removed.append(f"pod {md['namespace']}/{md['name']}")
        for node in sorted(names):
            obj = await client.get_or_none(f"/api/v1/nodes/{node}")
            labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
            if obj is not None and labels.get("antrea.io/lab-node") == "true":
                await client.delete(f"/api/v1/nodes/{node}")
                removed.append(f"node {node}")
            path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{node}"
            if await client.delete(path) is not None:
                removed.append(f"lease {node}")
        for ns in journalled_namespaces(spec.path):
            if await client.delete(f"/api/v1/namespaces/{ns}") is not None:
                removed.append(f"namespace {ns}")
    return removed


def forget(spec: LabSpec) -> list[str]:
    """Delete the lab's objects from its external API server (best effort, bounded in time).

    Runs its own event loop on a thread: `down` is synchronous and may be called from code
    that already runs a loop.
    """
    result: list[str] = []

    def work() -> None:
        try:
            result.extend(asyncio.run(asyncio.wait_for(_forget(spec), FORGET_TIMEOUT)))
        except (KubeError, OSError, TimeoutError, ValueError) as exc:
            log.warning("lab_forget_external_failed", lab=spec.name, error=repr(exc))

    t = threading.Thread(target=work, name="lab-forget", daemon=True)
    t.start()
    t.join(FORGET_TIMEOUT + 5)
    log.info("lab_forgot_external", lab=spec.name, removed=len(result))
    return result
