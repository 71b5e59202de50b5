"""Pod sandboxes on disk: which network namespace and container id belong to which pod.

A lab "container runtime" keeps one small JSON record per pod sandbox under
``<lab>/nodes/<node>/sandboxes/<uid>.json``. It is written *before* the namespace and the CNI
ADD, so that after a crash the supervisor (on restart) or `antrea lab down` can still find and
remove everything; `antrea lab probe` and `antrea lab exec` read it to find a pod's namespace.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from antrea.testbed.lab.state import LabSpec, netns_prefix
from antrea.util.atomicfile import write_atomic


@dataclass(slots=True)
class Sandbox:
    namespace: str
    name: str
    uid: str
    node: str
    container_id: str
    netns: str
    host_network: bool = False
    ip: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def netns_path(self) -> str:
        return f"/var/run/netns/{self.netns}"

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.uid}.json"
        write_atomic(path, json.dumps(asdict(self)))

    def remove(self, directory: Path) -> None:
        (directory / f"{self.uid}.json").unlink(missing_ok=True)

    @classmethod
    def new(cls, *, lab: str, namespace: str, name: str, uid: str, node: str) -> Sandbox:
        cid = secrets.token_hex(32)  # 64 hex digits, like a containerd sandbox id
        return cls(
            namespace=namespace,
            name=name,
            uid=uid,
            node=node,
            container_id=cid,
            netns=f"{netns_prefix(lab)}pod-{cid[:12]}",
        )


def load_dir(directory: Path) -> list[Sandbox]:
    out: list[Sandbox] = []
    if not directory.is_dir():
        return out
    for p in sorted(directory.glob("*.json")):
        try:
            out.append(Sandbox(**json.loads(p.read_text())))
        except (OSError, ValueError, TypeError):
            continue
    return out


def load_all(spec: LabSpec) -> dict[str, Sandbox]:
    """Every sandbox of the lab, by pod uid."""
    return {sb.uid: sb for node in spec.nodes for sb in load_dir(node.sandbox_dir)}


def find(spec: LabSpec, key: str) -> Sandbox | None:
    """The sandbox of pod ``ns/name`` (the newest if a pod name was reused)."""
    hits = [sb for sb in load_all(spec).values() if sb.key == key and sb.ip]
    return hits[-1] if hits else None
