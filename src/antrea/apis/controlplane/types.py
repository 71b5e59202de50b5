"""Internal (control-plane) NetworkPolicy objects: what the controller computes and agents realize.

These mirror Antrea's ``controlplane.antrea.io/v1beta2`` types. They are frozen value objects with
no I/O; `antrea.apis.controlplane.codec` is the only place that knows their wire form.

Conventions (as in Antrea):
- ``NetworkPolicy.name`` is the UID of the source Kubernetes NetworkPolicy.
- Group names are deterministic (derived from a normalized selector), so identical selectors in
  different policies share one group.
- An empty ``from``/``to`` list in the Kubernetes object (meaning "everyone") is compiled to the
  match-all peer: ``ip_blocks=(IPBlock("0.0.0.0/0"),)``.
- A direction listed in ``policyTypes`` without rules becomes a *deny-all rule*: a rule of that
  direction whose peer is empty (no groups, no blocks). It matches no traffic; it only makes the
  applied-to pods isolated in that direction. More generally, any rule of a direction isolates
  its applied-to pods in that direction.
- ``services is None`` means "all ports and protocols"; a ``Service`` with ``port is None`` means
  every port of that protocol; a string ``port`` is a named port resolved per target pod.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import cast

from antrea.apis.controlplane.fastnew import positional_new


class Direction(StrEnum):
    IN = "In"
    OUT = "Out"


class Protocol(StrEnum):
    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"
    ICMP = "ICMP"


class RuleAction(StrEnum):
    """Actions of Antrea-native rules (a Kubernetes NetworkPolicy rule has none: Allow)."""

    ALLOW = "Allow"
    DROP = "Drop"
    REJECT = "Reject"
    PASS = "Pass"


class Kind(StrEnum):
    NETWORK_POLICY = "NetworkPolicy"
    ADDRESS_GROUP = "AddressGroup"
    APPLIED_TO_GROUP = "AppliedToGroup"


@dataclass(frozen=True, slots=True)
class NamedPort:
    """A container port with a name, as a group member declares it."""

    name: str
    protocol: Protocol
    port: int


@dataclass(frozen=True, slots=True)
class PodReference:
    namespace: str
    name: str

    # The generated __eq__ and __hash__, spelled out: a pod's ofport is looked up by its
    # reference per rule target (~15,000 per initial sync), and the generated __eq__ builds
    # two tuples per comparison. Same semantics: equal iff same class and same fields.
    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self.name == other.name and self.namespace == other.namespace

    def __hash__(self) -> int:
        return hash((self.namespace, self.name))


@dataclass(frozen=True, slots=True)
class GroupMember:
    """A pod selected by a group. Members are compared by value; ``ips`` are strings."""

    pod: PodReference
    ips: tuple[str, ...]
    node: str = ""
    ports: tuple[NamedPort, ...] = ()


@dataclass(frozen=True, slots=True)
class IPBlock:
    cidr: str
    except_: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Service:
    protocol: Protocol = Protocol.TCP
    port: int | str | None = None
    end_port: int | None = None
    icmp_type: int | None = None  # ICMP only; None = any
    icmp_code: int | None = None


@dataclass(frozen=True, slots=True)
class NetworkPolicyPeer:
    address_groups: tuple[str, ...] = ()
    ip_blocks: tuple[IPBlock, ...] = ()

    def is_empty(self) -> bool:
        return not self.address_groups and not self.ip_blocks


@dataclass(frozen=True, slots=True)
class NetworkPolicyRule:
    direction: Direction
    from_: NetworkPolicyPeer = field(default_factory=NetworkPolicyPeer)
    to: NetworkPolicyPeer = field(default_factory=NetworkPolicyPeer)
    services: tuple[Service, ...] | None = None
    name: str = ""
    priority: int = -1
    # Antrea-native rules only: the action (None for a Kubernetes NetworkPolicy rule) and a
    # rule-level appliedTo that replaces the policy's.
    action: RuleAction | None = None
    applied_to_groups: tuple[str, ...] = ()
    # Audit logging (agent/auditlog.py): Antrea-native ``enableLogging``, or every rule of a
    # Kubernetes NetworkPolicy whose Namespace has networkpolicy.antrea.io/enable-logging=true.
    enable_logging: bool = False
    log_label: str = ""  # Antrea-native ``logLabel``: the audit line's label field

    def peer(self) -> NetworkPolicyPeer:
        """The remote side of the rule: ``from_`` for ingress, ``to`` for egress."""
        return self.from_ if self.direction is Direction.IN else self.to


@dataclass(frozen=True, slots=True)
class NetworkPolicyReference:
    type: str  # K8sNetworkPolicy | AntreaClusterNetworkPolicy | AntreaNetworkPolicy
    namespace: str
    name: str
    uid: str


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    name: str  # the UID of the source policy
    source_ref: NetworkPolicyReference
    rules: tuple[NetworkPolicyRule, ...]
    applied_to_groups: tuple[str, ...]
    generation: int = 0
    # Antrea-native policies only (None for a Kubernetes NetworkPolicy): the tier's priority
    # and the policy's own priority. Rules are evaluated by (tier, priority, rule position).
    tier_priority: int | None = None
    priority: float | None = None

    def is_antrea_native(self) -> bool:
        return self.tier_priority is not None


@dataclass(frozen=True, slots=True)
class AddressGroup:
    name: str
    members: frozenset[GroupMember]


@dataclass(frozen=True, slots=True)
class AppliedToGroup:
    """Members of an applied-to group. On the wire to one node, only that node's members."""

    name: str
    members: frozenset[GroupMember]


@dataclass(frozen=True, slots=True)
class AddressGroupPatch:
    """An incremental change to an AddressGroup (sent as MODIFIED)."""

    name: str
    added: frozenset[GroupMember]
    removed: frozenset[GroupMember]


@dataclass(frozen=True, slots=True)
class NetworkPolicyNodeStatus:
    """What an agent reports: the generation of a policy it has realized on its node."""

    policy: str  # internal NetworkPolicy name (source UID)
    node: str
    generation: int
    realized: bool = True
    message: str = ""


ControlPlaneObject = NetworkPolicy | AddressGroup | AppliedToGroup

# Positional constructors for building rules in bulk (the decoder, the compiler): every field,
# in declaration order, straight into the slots (fastnew: a frozen dataclass __init__ costs
# about twice as much). A rule's fields: direction, from, to, services, name, priority, action,
# applied-to groups, enable_logging, log label.
new_block = cast(Callable[[str, tuple[str, ...]], IPBlock], positional_new(IPBlock))
new_peer = cast(
    Callable[[tuple[str, ...], tuple[IPBlock, ...]], NetworkPolicyPeer],
    positional_new(NetworkPolicyPeer),
)
new_rule = cast(
    Callable[
        [
            Direction,
            NetworkPolicyPeer,
            NetworkPolicyPeer,
            tuple[Service, ...] | None,
            str,
            int,
            RuleAction | None,
            tuple[str, ...],
            bool,
            str,
        ],
        NetworkPolicyRule,
    ],
    positional_new(NetworkPolicyRule),
)
