"""OpenFlow group values (for example a Service's endpoints as select buckets).

Like `Flow`, a `Group` is a value independent of how it is sent: `render.render_group` gives its
``ovs-ofctl`` text, `wire.group_mod` its OpenFlow 1.5 bytes. Groups reach a switch only through
`FlowTransport.bundle` (``set_groups``: add-or-modify, ``delete_groups``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from antrea.ovs.openflow.flow import Action


class GroupType(IntEnum):
    ALL = 0
    SELECT = 1
    INDIRECT = 2
    FF = 3


@dataclass(frozen=True, slots=True)
class Bucket:
    actions: tuple[Action, ...]
    weight: int = 0  # select groups


@dataclass(frozen=True, slots=True)
class Group:
    """An OpenFlow group: id, type and buckets (numbered 0.. in order)."""

    group_id: int
    type: GroupType
    buckets: tuple[Bucket, ...] = ()
