"""`antrea lab demo`: what README command 1 shows a newcomer.

A 2-node lab, the e2e model (namespaces x, y, z; pods a, b, c spread over both nodes), the TCP/80
connectivity matrix, a NetworkPolicy applied with kubectl (only pods in namespace y may reach
x/a on port 80), and the matrix again. The lab stays up afterwards so it can be explored; the
last lines say how, and how to remove it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import uvloop

from antrea.testbed.lab import lifecycle, model, state
from antrea.testbed.lab.external import record_namespaces
from antrea.testbed.lab.kube import KubeClient
from antrea.testbed.lab.probe import lab_targets, probe_matrix, render_table
from antrea.testbed.lab.state import CniMode, LabError

POLICY = textwrap.dedent(
    """\
    apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata:
      name: allow-y-to-a
      namespace: x
    spec:
      podSelector:
        matchLabels:
          pod: a
      policyTypes: [Ingress]
      ingress:
      - from:
        - namespaceSelector:
            matchLabels:
              ns: "y"   # quoted: a bare y is the boolean true in YAML 1.1
        ports:
        - protocol: TCP
          port: 80
    """
)


def _say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def kubectl() -> str:
    local = Path(sys.executable).parent / "kubectl"
    return str(local) if local.exists() else "kubectl"


async def _matrix(spec: state.LabSpec) -> str:
    async with KubeClient.from_kubeconfig(spec.kubeconfig) as client:
        targets = await lab_targets(spec, client, namespaces=list(model.NAMESPACES))
    return render_table(await probe_matrix(targets, protocol="TCP", port=80))


async def _populate(spec: state.LabSpec, m: model.Model) -> None:
    async with KubeClient.from_kubeconfig(spec.kubeconfig) as client:
        record_namespaces(spec.path, await model.create(client, m))
        await model.wait_running(client, m.keys, timeout=120)


def run_demo(*, name: str, cni: CniMode, teardown: bool) -> int:
    if (state.lab_root() / name).exists():
        _say(f"removing the previous {name!r} lab")
        lifecycle.down(name)
    _say(f"starting a 2-node lab {name!r} ({cni} CNI): namespaces, OVS per node, API server")
    spec = lifecycle.up(name=name, nodes=2, cni=cni)
    env = dict(os.environ, KUBECONFIG=str(spec.kubeconfig))
    try:
        m = model.Model(nodes=spec.node_names())
        _say("creating namespaces x, y, z with pods a, b, c spread over node1 and node2")
        uvloop.run(_populate(spec, m))
        subprocess.run([kubectl(), "get", "pods", "-A", "-o", "wide"], env=env, check=False)
        _say("connectivity before any policy (TCP port 80)")
        print(uvloop.run(_matrix(spec)), flush=True)
        _say("applying a NetworkPolicy with kubectl: only namespace y may reach x/a on TCP 80")
        print(POLICY, flush=True)
        policy = spec.path / "demo-policy.yaml"
        policy.write_text(POLICY)
        applied = subprocess.run([kubectl(), "apply", "-f", str(policy)], env=env, check=False)
        if applied.returncode != 0:
            raise LabError(f"kubectl apply -f {policy} failed (the lab is still up)")
        time.sleep(2.0)  # realization takes well under a second; leave margin for a busy host
        _say("connectivity with the policy")
        print(uvloop.run(_matrix(spec)), flush=True)
        if cni == "reference":
            print("(the reference bridge plugin does not enforce NetworkPolicy: "
                  "try `antrea lab demo --cni antrea`)")  # fmt: skip
    except BaseException:
        if teardown:
            lifecycle.down(name)
        raise
    if teardown:
        _say("tearing the lab down")
        lifecycle.down(name)
        return 0
    _say("the lab is still running; explore it:")
    print(
        textwrap.dedent(
            f"""\
              export KUBECONFIG={spec.kubeconfig}
              kubectl get nodes,pods -A -o wide
              antrea lab probe --name {name}                    # the matrix again
              antrea lab exec --name {name} x/b -- ping -c1 <ip of x/a>
              antrea lab exec --name {name} node1 -- ovs-vsctl show
              kubectl delete networkpolicy -n x allow-y-to-a    # then probe again
            and when done:
              antrea lab down --name {name}"""
        )
    )
    return 0
