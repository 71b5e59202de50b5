"""``pods/log`` and ``pods/exec``: what kube-apiserver proxies to the node's kubelet.

kube-apiserver answers these by connecting to the kubelet of the pod's node (port 10250). The
embedded server has no kubelet endpoint to dial; whoever runs the pods (the lab supervisor,
whose kubelets live in the same process) registers a `PodRuntime` on the server instead.
Without one, both subresources answer 400 as for a pod whose node cannot be reached.

``pods/exec`` speaks the WebSocket remote-command protocol kubectl 1.30+ uses by default
(``v5.channel.k8s.io``/``v4.channel.k8s.io``: one binary message per chunk, first byte the
stream: 1 stdout, 2 stderr, 3 the final Status). The command runs to completion and its output
is then sent; stdin and TTYs (``kubectl exec -it``) are not supported (400).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from aiohttp import web

from antrea.errors import AntreaError
from antrea.testbed.apiserver import errors
from antrea.testbed.apiserver.store import Store

JSON = dict[str, Any]

EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDOUT, STDERR, ERROR = 1, 2, 3


@dataclass(frozen=True, slots=True)
class ExecResult:
    stdout: bytes
    stderr: bytes
    exit_code: int


class NotRunning(AntreaError):
    """The pod has no running sandbox on its node (yet)."""


class PodRuntime(Protocol):
    def logs(self, namespace: str, name: str) -> list[str]:
        """The pod's log lines, oldest first (raises `NotRunning`)."""
        ...

    async def exec(self, namespace: str, name: str, command: list[str]) -> ExecResult:
        """Run ``command`` in the pod (raises `NotRunning`)."""
        ...


def _pod(store: Store, namespace: str, name: str) -> JSON:
    pod = store.get(("", "pods"), namespace, name)
    if pod is None:
        raise errors.not_found(group="", resource="pods", name=name)
    return pod


def _container(pod: JSON, query: Any) -> str:
    names = [c.get("name", "") for c in (pod.get("spec") or {}).get("containers") or []]
    wanted = query.get("container") or (names[0] if names else "")
    if wanted not in names:
        raise errors.bad_request(
            f"container {wanted} is not valid for pod {pod['metadata']['name']}"
        )
    return str(wanted)


async def logs(
    runtime: PodRuntime | None, store: Store, request: web.Request, namespace: str, name: str
) -> web.Response:
    pod = _pod(store, namespace, name)
    container = _container(pod, request.query)
    if runtime is None:
        raise errors.bad_request(f"no kubelet to ask for the logs of pod {name}")
    try:
        lines = runtime.logs(namespace, name)
    except NotRunning:
        raise errors.bad_request(
            f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating'
        ) from None
    tail = request.query.get("tailLines")
    if tail is not None:
        if not tail.isdigit():
            raise errors.bad_request(f"invalid tailLines {tail!r}")
        lines = lines[-int(tail) :] if int(tail) else []
    body = "".join(line + "\n" for line in lines)
    return web.Response(text=body, content_type="text/plain")


def _status(result: ExecResult) -> bytes:
    if result.exit_code == 0:
        return orjson.dumps({"metadata": {}, "status": "Success"})
    return orjson.dumps(
        {
            "metadata": {},
            "status": "Failure",
            "message": f"command terminated with non-zero exit code: {result.exit_code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(result.exit_code)}]},
        }
    )


async def exec_(
    runtime: PodRuntime | None, store: Store, request: web.Request, namespace: str, name: str
) -> web.StreamResponse:
    pod = _pod(store, namespace, name)
    _container(pod, request.query)
    command = request.query.getall("command", [])
    if not command:
        raise errors.bad_request("you must specify at least 1 command")
    if request.query.get("tty") in ("1", "true") or request.query.get("stdin") in ("1", "true"):
        raise errors.bad_request("stdin and tty are not supported by this server's exec")
    if runtime is None:
        raise errors.bad_request(f"no kubelet to run commands in pod {name}")
    ws = web.WebSocketResponse(protocols=EXEC_PROTOCOLS)
    if not ws.can_prepare(request).ok:
        raise errors.bad_request("pods/exec needs a WebSocket upgrade (v4/v5.channel.k8s.io)")
    await ws.prepare(request)
    try:
        try:
            result = await runtime.exec(namespace, name, list(command))
        except NotRunning:
            msg = f'container not found in pod "{name}": not running'
            result = ExecResult(b"", msg.encode() + b"\n", 1)
        if result.stdout:
            await ws.send_bytes(bytes([STDOUT]) + result.stdout)
        if result.stderr:
            await ws.send_bytes(bytes([STDERR]) + result.stderr)
        await ws.send_bytes(bytes([ERROR]) + _status(result))
    finally:
        await ws.close()
    return ws
