"""The computed objects with their spans, and the change records the compiler emits.

`ComputedStore` is what the distribution server reads: every internal NetworkPolicy,
AddressGroup and AppliedToGroup with its span (the nodes it must be sent to). AppliedToGroups
hold all their members; `applied_to_group_for_node` gives the per-node view agents receive.

The store keeps no copy of what it serves: each name maps to the compiler's own state of that
object (a group, a policy), which gives its published ``(object, span)`` entry on demand. An
entry tuple per object would be 72 bytes, 14 MB for the 200,000 objects of the scale benchmark.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

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


class Published(Protocol):
    """The compiler's state of one stored object: what it last published, as an entry."""

    def entry(self, kind: Kind) -> Entry: ...


class ComputedStore:
    """Read-only view for consumers; the compiler writes through `_put` and `_delete`.

    Between flushes an entry is what the last flush published (the compiler changes the
    published objects and spans of its states only while flushing).
    """

    __slots__ = ("_objects",)

    def __init__(self) -> None:
        self._objects: dict[Kind, dict[str, Published]] = {kind: {} for kind in Kind}

    def get(self, kind: Kind, name: str) -> Entry | None:
        state = self._objects[kind].get(name)
        return None if state is None else state.entry(kind)

    def names(self, kind: Kind) -> list[str]:
        return [*self._objects[kind]]

    def list(self, kind: Kind) -> list[Entry]:
        return [state.entry(kind) for state in self._objects[kind].values()]

    def count(self, kind: Kind) -> int:
        return len(self._objects[kind])

    def applied_to_group_for_node(self, name: str, node: str) -> AppliedToGroup | None:
        """The AppliedToGroup as sent to ``node``: only its members on that node."""
        entry = self.get(Kind.APPLIED_TO_GROUP, name)
        if entry is None:
            return None
        group = entry[0]
        assert isinstance(group, AppliedToGroup)
        return AppliedToGroup(name, frozenset(m for m in group.members if m.node == node))

    def _put(self, kind: Kind, name: str, state: Published) -> None:
        self._objects[kind][name] = state

    def _delete(self, kind: Kind, name: str) -> None:
        del self._objects[kind][name]
