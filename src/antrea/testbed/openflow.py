"""Fakes for unit tests (shipped with the package so every role's tests can use them)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from antrea.ovs.errors import BundleRejected
from antrea.ovs.openflow.flow import Flow, FlowKey
from antrea.ovs.openflow.groups import Group
from antrea.ovs.openflow.render import render_match


class RecordingTransport:
    """A `FlowTransport` that keeps a switch table in memory and records every bundle.

    It enforces what OVS enforces: a modify or delete of a missing key is harmless, an add
    replaces the flow with the same key; groups are added-or-modified and deleted by id. Set
    `reject` to make the next bundles fail.
    """

    def __init__(self) -> None:
        self.flows: dict[FlowKey, Flow] = {}
        self.groups: dict[int, Group] = {}
        self.bundles: list[tuple[list[Flow], list[Flow], list[Flow]]] = []
        self.reject: int = 0

    async def bundle(
        self,
        *,
        add: Sequence[Flow] = (),
        modify: Sequence[Flow] = (),
        delete: Sequence[Flow] = (),
        set_groups: Sequence[Group] = (),
        delete_groups: Sequence[Group] = (),
    ) -> None:
        if self.reject:
            self.reject -= 1
            raise BundleRejected(["fake"], 1, "rejected by test")
        self.bundles.append((list(add), list(modify), list(delete)))
        for g in delete_groups:
            self.groups.pop(g.group_id, None)
        for g in set_groups:
            self.groups[g.group_id] = g
        for f in delete:
            self.flows.pop(f.key, None)
        for f in modify:
            old = self.flows.get(f.key)
            if old is not None:
                self.flows[f.key] = old.with_actions(f.actions)
        for f in add:
            self.flows[f.key] = f

    def table(self, table: int) -> list[Flow]:
        return sorted(
            (f for f in self.flows.values() if f.table == table),
            key=lambda f: (-f.priority, render_match(f.match)),
        )


class StreamingRecorder(RecordingTransport):
    """A `RecordingTransport` whose streamed bundles (`stream`) behave like the native one's:
    the adds are kept, not applied, until the commit, which applies them first and then the
    commit's deletes, modifies and adds (the native order), all or nothing. `refuse` names
    flows the switch refuses (the whole bundle then fails, nothing applied)."""

    def __init__(self, refuse: Callable[[Flow], bool] | None = None) -> None:
        super().__init__()
        self.refuse = refuse
        self.streamed: list[list[Flow]] = []  # every add call of every stream
        self.commits = 0  # streamed bundles committed
        self.discards = 0

    def stream(self) -> FakeStream:
        return FakeStream(self)

    async def bundle(
        self,
        *,
        add: Sequence[Flow] = (),
        modify: Sequence[Flow] = (),
        delete: Sequence[Flow] = (),
        set_groups: Sequence[Group] = (),
        delete_groups: Sequence[Group] = (),
    ) -> None:
        self._check([*add, *modify, *delete])
        await super().bundle(
            add=add,
            modify=modify,
            delete=delete,
            set_groups=set_groups,
            delete_groups=delete_groups,
        )

    def _check(self, flows: Sequence[Flow]) -> None:
        if self.refuse is not None and any(self.refuse(f) for f in flows):
            raise BundleRejected(["fake"], 1, "refused by test")


class FakeStream:
    def __init__(self, transport: StreamingRecorder) -> None:
        self.t = transport
        self.staged: list[Flow] = []
        self.done = False

    async def add(self, flows: Sequence[Flow]) -> None:
        assert not self.done, "add after commit or discard"
        self.t.streamed.append(list(flows))
        self.staged.extend(flows)

    async def commit(
        self, *, add: Sequence[Flow] = (), modify: Sequence[Flow] = (), delete: Sequence[Flow] = ()
    ) -> None:
        assert not self.done, "commit after commit or discard"
        self.done = True
        t = self.t
        if t.reject:
            t.reject -= 1
            raise BundleRejected(["fake"], 1, "rejected by test")
        t._check([*self.staged, *add, *modify, *delete])
        t.commits += 1
        t.bundles.append(([*self.staged, *add], list(modify), list(delete)))
        for f in self.staged:
            t.flows[f.key] = f
        for f in delete:
            t.flows.pop(f.key, None)
        for f in modify:
            old = t.flows.get(f.key)
            if old is not None:
                t.flows[f.key] = old.with_actions(f.actions)
        for f in add:
            t.flows[f.key] = f

    async def discard(self) -> None:
        if not self.done:
            self.done = True
            self.t.discards += 1
