"""Typed flow owners: who states which flows (`antrea.ovs.openflow.client.FlowClient`).

Every flow the agent installs belongs to exactly one owner, and each feature owns its own:

* the pipeline (`agent/openflow/pipeline.py`): the `BaseOwner` members (table defaults, gw0,
  the canary, tun0);
* the pod network (`agent/cniserver/podconfig.py`): ``PodOwner(container_id)``;
* node routes (`agent/noderoute.py`): ``NodeOwner(node name)``;
* AntreaProxy (`agent/proxy/`): ``(ProxyOwner.SHARED,)``, ``(ProxyOwner.SERVICE, namespace,
  name, port, protocol)``, ``(ProxyOwner.ENDPOINT, ip, port, protocol)``;
* NetworkPolicy (`agent/networkpolicy/`): ``(PolicyOwner.BASE,)``, ``(PolicyOwner.MATCH, table,
  match)``, ``(PolicyOwner.ISOLATION, table, match)``, ``(PolicyOwner.CONJUNCTION, id)``,
  ``(PolicyOwner.NATIVE, rule id)``, ``(PolicyOwner.LAST_RESORT,)``.

A feature finds its owners by type (``is_policy_owner``), never by a string prefix. The proxy's
and the policy realization's owners are tuples tagged with a `StrEnum` kind (C-speed hashing on
the realization's hot path, where thousands are built per batch); the others are frozen
dataclasses.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from enum import StrEnum


class BaseOwner(StrEnum):
    """The pipeline feature's owners."""

    PIPELINE = "pipeline"  # table defaults (classifier, miss flows, L2/L3 forwarding skeleton)
    GATEWAY = "gateway"  # gw0
    CANARY = "canary"  # the flow whose absence means ovs-vswitchd lost our tables
    TUNNEL = "tunnel"  # tun0 (encap mode)


@dataclass(frozen=True, slots=True)
class PodOwner:
    """One local pod's flows (its container)."""

    container_id: str


@dataclass(frozen=True, slots=True)
class NodeOwner:
    """One remote node's flows (encap mode)."""

    name: str


class ProxyOwner(StrEnum):
    """Kinds of AntreaProxy owners (the first element of the owner tuple)."""

    SHARED = "proxy"
    SERVICE = "service"
    ENDPOINT = "endpoint"


class PolicyOwner(StrEnum):
    """Kinds of NetworkPolicy owners (the first element of the owner tuple)."""

    BASE = "np-base"  # the policy tables' skeleton
    MATCH = "np-match"  # one shared clause flow: (kind, table, match)
    ISOLATION = "np-iso"  # one isolation drop flow: (kind, table, match)
    CONJUNCTION = "np-conj"  # one conjunction's action flows: (kind, conj id)
    NATIVE = "np-anp"  # every flow of one Antrea-native rule: (kind, rule id)
    LAST_RESORT = "np-last"  # the drops of every rule whose realization crashed: (kind,)


def is_policy_owner(owner: Hashable) -> bool:
    return isinstance(owner, tuple) and bool(owner) and isinstance(owner[0], PolicyOwner)
