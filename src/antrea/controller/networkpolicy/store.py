"""The computed objects with their spans, and the change records the compiler emits.

`ComputedStore` is what the distribution server reads: every internal NetworkPolicy,
AddressGroup and AppliedToGroup with its span (the nodes it must be sent to). AppliedToGroups
hold all their members; `applied_to_group_for_node` gives the per-node view agents receive.
"""

from __future__ import annotations

from typing import NamedTuple

from antrea.apis.controlplane.types import (
    AddressGroupPatch,
    AppliedToGroup,
    ControlPlaneObject,
    Kind,
)

Span = frozenset[str]
Entry = tuple[ControlPlaneObject, Span]
EMPTY_SPAN: Span = frozenset()


class Change(NamedTuple):
    """One object added (``old is None``), modified, or deleted (``new is None``).

    ``old is new`` means only the span changed. ``patch`` is set for a modified AddressGroup or
    AppliedToGroup whose members changed (added/removed members; the `AddressGroupPatch` type is
    used for both kinds), ``None`` otherwise. A deleted object has ``new_span`` empty.
    """

    kind: Kind
    name: str
    old: ControlPlaneObject | None
    new: ControlPlaneObject | None
    old_span: Span
    new_span: Span
    patch: AddressGroupPatch | None


class ComputedStore:
    """Read-only view for consumers; the compiler writes through `_put` and `_delete`."""

    __slots__ = ("_objects",)

    def __init__(self) -> None:
        self._objects: dict[Kind, dict[str, Entry]] = {kind: {} for kind in Kind}

    def get(self, kind: Kind, name: str) -> Entry | None:
        return self._objects[kind].get(name)

    def names(self, kind: Kind) -> list[str]:
        return [*self._objects[kind]]

    def list(self, kind: Kind) -> list[Entry]:
        return [*self._objects[kind].values()]

    def count(self, kind: Kind) -> int:
        return len(self._objects[kind])

    def applied_to_group_for_node(self, name: str, node: str) -> AppliedToGroup | None:
        """The AppliedToGroup as sent to ``node``: only its members on that node."""
        entry = self._objects[Kind.APPLIED_TO_GROUP].get(name)
        if entry is None:
            return None
        group = entry[0]
        assert isinstance(group, AppliedToGroup)
        return AppliedToGroup(name, frozenset(m for m in group.members if m.node == node))

    def _entry(self, kind: Kind, name: str) -> Entry:
        return self._objects[kind][name]

    def _put(self, kind: Kind, name: str, obj: ControlPlaneObject, span: Span) -> None:
        self._objects[kind][name] = (obj, span)

    def _delete(self, kind: Kind, name: str) -> None:
        del self._objects[kind][name]
