"""The NetworkPolicy compiler of the controller role (pure, synchronous, no I/O).

Feed it decoded Kubernetes objects; read computed objects and spans from ``store``; subscribe to
changes. See `controller.NetworkPolicyController` and docs/design/controller.md.
"""

from antrea.controller.networkpolicy.controller import Listener, NetworkPolicyController
from antrea.controller.networkpolicy.store import EMPTY_SPAN, Change, ComputedStore, Entry, Span

__all__ = [
    "EMPTY_SPAN",
    "Change",
    "ComputedStore",
    "Entry",
    "Listener",
    "NetworkPolicyController",
    "Span",
]
