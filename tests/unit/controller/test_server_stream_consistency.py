"""The real compiler + Dispatcher: for every node, the delta stream applied to the state a watcher
got at connect time must always equal a fresh snapshot (what a reconnecting agent would get)."""

from __future__ import annotations

import random
from typing import Any

from antrea.apis.controlplane.codec import EventType, FrameDecoder, WatchEvent
from antrea.apis.controlplane.types import AddressGroup, AppliedToGroup, Kind
from antrea.controller.distribution import Dispatcher
from antrea.controller.networkpolicy import NetworkPolicyController

NODES = ("n1", "n2", "n3")
NAMESPACES = ("x", "y")
APPS = ("a", "b", "c")


def pod(ns: str, name: str, app: str, node: str, ip: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": ns, "name": name, "labels": {"app": app}, "uid": f"{ns}-{name}"},
        "spec": {
            "nodeName": node,
            "containers": [{"ports": [{"name": "http", "containerPort": 80}]}],
        },
        "status": {"phase": "Running", "podIP": ip},
    }


def namespace(name: str, team: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"ns": name, "team": team}}}


def policy(ns: str, name: str, target: str, peer: str, gen: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"namespace": ns, "name": name, "uid": f"uid-{ns}-{name}", "generation": gen},
        "spec": {
            "podSelector": {"matchLabels": {"app": target}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"podSelector": {"matchLabels": {"app": peer}}, "namespaceSelector": {}}]}
            ],
        },
    }


class Mirror:
    """Applies frames exactly as an agent would."""

    def __init__(self, initial: list[bytes]) -> None:
        self.objs: dict[tuple[Kind, str], Any] = {}
        self.dec = FrameDecoder()
        evs = self._decode(initial)
        assert evs[-1].type is EventType.BOOKMARK
        for ev in evs[:-1]:
            self.apply(ev)

    def _decode(self, frames: list[bytes]) -> list[WatchEvent]:
        return [ev for f in frames for ev in self.dec.feed(f)]

    def feed(self, frames: list[bytes]) -> None:
        for ev in self._decode(frames):
            self.apply(ev)

    def apply(self, ev: WatchEvent) -> None:
        assert ev.kind is not None
        if ev.type is EventType.ADDED:
            assert ev.object is not None and (ev.kind, ev.object.name) not in self.objs
            self.objs[(ev.kind, ev.object.name)] = ev.object
        elif ev.type is EventType.DELETED:
            assert ev.object is not None
            del self.objs[(ev.kind, ev.object.name)]
        elif ev.patch is not None:
            cur = self.objs[(ev.kind, ev.patch.name)]
            assert isinstance(cur, AddressGroup)
            assert ev.patch.removed <= cur.members and not (ev.patch.added & cur.members)
            self.objs[(ev.kind, ev.patch.name)] = AddressGroup(
                cur.name, (cur.members - ev.patch.removed) | ev.patch.added
            )
        else:
            assert ev.object is not None and (ev.kind, ev.object.name) in self.objs
            self.objs[(ev.kind, ev.object.name)] = ev.object


def test_random_event_sequences_keep_every_node_consistent() -> None:
    rng = random.Random(4)
    c = NetworkPolicyController()
    disp = Dispatcher(c.store, max_queue=100_000)
    c.subscribe(disp.on_change)
    mirrors: dict[str, tuple[Any, Mirror]] = {}
    for n in NODES:
        w, initial = disp.register(n)
        mirrors[n] = (w, Mirror(initial))
    pods: dict[tuple[str, str], dict[str, Any]] = {}
    policies: dict[tuple[str, str], dict[str, Any]] = {}
    for ns in NAMESPACES:
        c.add_namespace(namespace(ns, "t1"))
    for step in range(400):
        r = rng.random()
        if r < 0.45:
            key = (rng.choice(NAMESPACES), f"p{rng.randrange(8)}")
            new = pod(
                *key,
                rng.choice(APPS),
                rng.choice(NODES),
                f"10.0.{rng.randrange(3)}.{rng.randrange(1, 250)}",
            )
            old = pods.get(key)
            if old is None:
                c.add_pod(new)
            else:
                c.update_pod(old, new)
            pods[key] = new
        elif r < 0.6 and pods:
            key = rng.choice(sorted(pods))
            c.delete_pod(pods.pop(key))
        elif r < 0.85:
            key = (rng.choice(NAMESPACES), f"np{rng.randrange(4)}")
            old = policies.get(key)
            gen = old["metadata"]["generation"] + 1 if old else 1
            new = policy(*key, rng.choice(APPS), rng.choice(APPS), gen)
            if old is None:
                c.add_network_policy(new)
            else:
                c.update_network_policy(old, new)
            policies[key] = new
        elif r < 0.95 and policies:
            key = rng.choice(sorted(policies))
            c.delete_network_policy(policies.pop(key))
        else:
            ns = rng.choice(NAMESPACES)
            c.update_namespace(None, namespace(ns, rng.choice(("t1", "t2"))))
        for n, (w, mirror) in mirrors.items():
            mirror.feed(list(w.queue))
            w.queue.clear()
            expected = Mirror(list(disp.snapshot_frames(n))).objs
            assert mirror.objs == expected, f"node {n} diverged at step {step}"
            brute = {
                (kind, obj.name) for kind in Kind for obj, span in c.store.list(kind) if n in span
            }
            assert set(expected) == brute, f"node {n} snapshot index wrong at step {step}"
            for (kind, _), obj in mirror.objs.items():
                if kind is Kind.APPLIED_TO_GROUP:
                    assert isinstance(obj, AppliedToGroup)
                    assert all(m.node == n for m in obj.members)
    assert any(m.objs for _, m in mirrors.values())
    assert disp.stats.watchers_dropped == 0
