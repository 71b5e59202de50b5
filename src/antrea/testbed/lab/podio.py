"""``kubectl logs`` and ``kubectl exec`` for lab pods: the kubelet's streaming side.

The embedded API server asks this (its `PodRuntime`) instead of dialing a kubelet: the lab's
kubelets run in the same supervisor process. Logs are the pod workload's recent lines
(`antrea.testbed.lab.workload`); exec runs the command in the pod's network namespace
(``ip netns exec``, the host's filesystem: lab pods have no image of their own), with a
timeout of `EXEC_TIMEOUT` seconds.
"""

from __future__ import annotations

import asyncio

from antrea.testbed.apiserver.podstreams import ExecResult, NotRunning
from antrea.testbed.lab.kubelet import Kubelet
from antrea.testbed.lab.sandbox import Sandbox

EXEC_TIMEOUT = 30.0


class LabPodRuntime:
    def __init__(self) -> None:
        self.kubelets: dict[str, Kubelet] = {}

    def _find(self, namespace: str, name: str) -> tuple[Kubelet, Sandbox]:
        key = f"{namespace}/{name}"
        for kubelet in self.kubelets.values():
            sb = kubelet.sandboxes.get(key)
            if sb is not None:
                return kubelet, sb
        raise NotRunning(key)

    def logs(self, namespace: str, name: str) -> list[str]:
        kubelet, sb = self._find(namespace, name)
        wl = kubelet.workloads.get(sb.key)
        return list(wl.lines) if wl is not None else []

    async def exec(self, namespace: str, name: str, command: list[str]) -> ExecResult:
        _, sb = self._find(namespace, name)
        proc = await asyncio.create_subprocess_exec(
            "ip",
            "netns",
            "exec",
            sb.netns,
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), EXEC_TIMEOUT)
        except TimeoutError:
            proc.kill()
            out, err = await proc.communicate()
            err += f"timed out after {EXEC_TIMEOUT:.0f}s\n".encode()
        return ExecResult(out, err, proc.returncode if proc.returncode is not None else 137)
