"""Installing antrea on a real lab as a user would: `kubectl apply -f deploy/antrea.yml`.

The manifest is applied unchanged. What is particular to the lab's machines goes where the
manifest says a cluster's own settings go: the optional ConfigMap
``kube-system/antrea-config-overrides`` (`overrides`), which `antrea lab up --kubernetes real`
writes as it comes up, since the lab is that cluster's provisioner. Its nodes have no
openvswitch kernel module (``ovsDatapathType: netdev`` with ``disableTXChecksumOffload: true``)
and it runs no kube-proxy (``kubeAPIServerOverride``: the API server's address inside the lab).
``encap_mode`` picks ``trafficEncapMode`` (tests run both), set the same way before the install.
`lab_manifest` is the other way, one file with those options set (`antrea lab manifest`).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from antrea.testbed.lab.state import UNDERLAY_API_PORT, LabError, LabSpec

MANIFEST = Path(__file__).resolve().parents[5] / "deploy" / "antrea.yml"
OVERRIDES = "antrea-config-overrides"
NAMESPACE = "kube-system"


def _api_server(spec: LabSpec) -> str:
    return f"https://{spec.underlay_api_ip}:{UNDERLAY_API_PORT}"


def overrides(spec: LabSpec, *, encap_mode: str = "encap") -> dict[str, Any]:
    """ConfigMap ``antrea-config-overrides``: the lab's settings for deploy/antrea.yml."""
    agent: dict[str, Any] = {"ovsDatapathType": "netdev", "disableTXChecksumOffload": True,
                             "kubeAPIServerOverride": _api_server(spec)}  # fmt: skip
    if encap_mode != "encap":
        agent["trafficEncapMode"] = encap_mode
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": OVERRIDES, "namespace": NAMESPACE,
                     "labels": {"app": "antrea", "antrea.io/written-by": "antrea-lab"}},
        "data": {
            "antrea-agent.conf": yaml.safe_dump(agent, sort_keys=False),
            "antrea-controller.conf": yaml.safe_dump(
                {"kubeAPIServerOverride": _api_server(spec)}, sort_keys=False
            ),
        },
    }  # fmt: skip


def lab_manifest(spec: LabSpec, *, encap_mode: str = "encap", manifest: Path = MANIFEST) -> str:
    """``manifest`` with the lab's options set in ConfigMap antrea-config (one file)."""
    docs = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    override = _api_server(spec)
    for doc in docs:
        if doc.get("kind") != "ConfigMap" or doc["metadata"]["name"] != "antrea-config":
            continue
        agent = yaml.safe_load(doc["data"]["antrea-agent.conf"])
        agent.update(ovsDatapathType="netdev", disableTXChecksumOffload=True,
                     kubeAPIServerOverride=override, trafficEncapMode=encap_mode)  # fmt: skip
        doc["data"]["antrea-agent.conf"] = yaml.safe_dump(agent, sort_keys=False)
        ctrl = yaml.safe_load(doc["data"]["antrea-controller.conf"])
        ctrl["kubeAPIServerOverride"] = override
        doc["data"]["antrea-controller.conf"] = yaml.safe_dump(ctrl, sort_keys=False)
    return yaml.safe_dump_all(docs, sort_keys=False)


def kubectl(spec: LabSpec, kubectl_bin: str, *args: str, input: str | None = None) -> str:
    proc = subprocess.run(
        [kubectl_bin, f"--kubeconfig={spec.kubeconfig}", *args],
        capture_output=True, text=True, input=input, timeout=180, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise LabError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def _ready(pods: list[dict[str, Any]]) -> bool:
    def one(p: dict[str, Any]) -> bool:
        conds = (p.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

    return bool(pods) and all(one(p) for p in pods)


def wait_ready(spec: LabSpec, kubectl_bin: str, *, timeout: float = 300.0) -> None:
    """Until an agent per node and a controller are Ready, and every node is Ready."""
    deadline = time.monotonic() + timeout
    while True:

        def get(*args: str) -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = json.loads(
                kubectl(spec, kubectl_bin, "get", *args, "-o", "json")
            )["items"]
            return items

        agents = get("pods", "-n", "kube-system", "-l", "component=antrea-agent")
        ctrl = get("pods", "-n", "kube-system", "-l", "component=antrea-controller")
        nodes = get("nodes")
        node_ready = all(
            any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
            for n in nodes
        )
        if len(agents) == len(spec.nodes) and _ready(agents) and _ready(ctrl) and node_ready:
            return
        if time.monotonic() > deadline:
            raise LabError(
                f"antrea not ready after {timeout:.0f}s:\n"
                + kubectl(spec, kubectl_bin, "get", "pods", "-A", "-o", "wide")
            )
        time.sleep(2)


def install(spec: LabSpec, kubectl_bin: str, *, encap_mode: str = "encap") -> None:
    """The lab's settings (already there from `lab up`; ``encap_mode`` added), then
    ``kubectl apply -f deploy/antrea.yml`` as is; until antrea is Ready everywhere."""
    if encap_mode != "encap":
        body = json.dumps(overrides(spec, encap_mode=encap_mode))
        kubectl(spec, kubectl_bin, "apply", "-f", "-", input=body)
    kubectl(spec, kubectl_bin, "apply", "-f", str(MANIFEST))
    wait_ready(spec, kubectl_bin)
