"""Fakes for unit tests (shipped with the package so every role's tests can use them)."""

from __future__ import annotations

from collections.abc import Sequence

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
