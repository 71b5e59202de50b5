"""Group membership: which pods each normalized selector selects, maintained incrementally.

A `SelectorGroup` is one normalized group selector (namespace + podSelector, or podSelector +
namespaceSelector). It is the state behind both the AddressGroup and the AppliedToGroup of that
selector (they share the name and the member computation; which of the two exist depends on how
policies reference it).

Indexes keep every event proportional to what it can affect:
- each namespace keeps a `GroupIndex` of the groups scoped to it, filed under one label key that
  every pod they select must carry, so a pod event only tests the groups whose key it has (plus
  the few unindexed selectors such as ``{}``);
- each namespace keeps the set of cluster-scoped (namespaceSelector) groups matching its labels,
  recomputed only when its labels change (through a `GroupIndex` of namespaceSelectors);
- a namespace label index finds the namespaces a new namespaceSelector group can match.

The engine only records *which* groups changed (``dirty``); building member sets, spans and
change notifications is the controller's flush (see `controller.py`), done once per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from antrea.apis.controlplane.types import AddressGroup, AppliedToGroup, GroupMember, Kind
from antrea.controller.networkpolicy.selectors import Selector, SelectorKey, group_name, group_text
from antrea.controller.networkpolicy.store import EMPTY_SPAN, Entry
from antrea.k8s.labels import Labels, normalize_selector

GroupKey = tuple[str, Selector, Selector | None]
LARGE_GROUP = 64  # members from which a group counts its members per node
_EMPTY: Mapping[str, str] = {}
# Shared placeholders for empty sets, replaced (never mutated) on first add: most namespaces match
# no cluster group and most groups are used in one role only. Typed as sets so readers need no
# special case.
_NO_NAMESPACES: set[NamespaceState] = frozenset()  # type: ignore[assignment]
_NO_GROUPS: set[SelectorGroup] = frozenset()  # type: ignore[assignment]
# Shared initial values (``frozenset()`` allocates a new 216-byte object each time since Python
# 3.10): a group's members and spans before its first flush.
NO_MEMBERS: frozenset[GroupMember] = frozenset()
NO_NODES = EMPTY_SPAN

# Policy UIDs referencing a group: the UID itself for one (nearly every group has one or two), a
# tuple while small (56 bytes instead of a 216-byte set), a set beyond that so that adding and
# removing stay O(1). Read them through `ref_uids`.
Refs = str | tuple[str, ...] | set[str]
NO_REFS: Refs = ()
_SMALL_REFS = 8


def add_ref(refs: Refs, uid: str) -> Refs:
    if isinstance(refs, str):
        return refs if refs == uid else (refs, uid)
    if isinstance(refs, set):
        refs.add(uid)
        return refs
    if uid in refs:
        return refs
    if not refs:
        return uid
    if len(refs) < _SMALL_REFS:
        return (*refs, uid)
    return {*refs, uid}


def drop_ref(refs: Refs, uid: str) -> Refs:
    if isinstance(refs, str):
        return NO_REFS if refs == uid else refs
    if isinstance(refs, set):
        refs.discard(uid)
        return refs
    if uid not in refs:
        return refs
    left = tuple(r for r in refs if r != uid)
    return left[0] if len(left) == 1 else left


def ref_uids(refs: Refs) -> tuple[str, ...] | set[str]:
    """The UIDs of ``refs`` as a collection (a one-element tuple for a single UID)."""
    return (refs,) if isinstance(refs, str) else refs


class NamespaceState:
    """A namespace as far as grouping cares: its labels (if the object exists) and its pods."""

    __slots__ = ("cluster_groups", "exists", "labels", "local", "name", "pods")

    def __init__(self, name: str) -> None:
        self.name = name
        self.exists = False
        self.labels: Labels = _EMPTY
        self.pods: dict[str, PodState] = {}
        self.local = GroupIndex()
        self.cluster_groups: set[SelectorGroup] = _NO_GROUPS  # replaced, never mutated, if empty

    def is_idle(self) -> bool:
        return not self.exists and not self.pods and not self.local.size


class PodState:
    """A pod's labels and its member value (``None`` if it does not count).

    The groups a counted pod is in are not stored (a tuple per pod): they are exactly the groups
    of its namespace's index and cluster groups whose pod selector matches its labels
    (`Grouping.groups_of`), since every group is filed there when created and removed when
    destroyed, and a namespace's cluster groups follow its labels."""

    __slots__ = ("labels", "member", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.labels: Labels = _EMPTY
        self.member: GroupMember | None = None


class SelectorGroup:
    """One normalized group selector, the pods it selects, and what the controller published.

    ``live`` holds the current members themselves (not pod states) while they differ from the
    published ``members``: a set keeps each element's hash, so the published snapshot
    ``frozenset(live)`` never rehashes a `GroupMember` (whose dataclass hash is recomputed on
    every call). Once a flush has published a small group (fewer than `LARGE_GROUP` members),
    ``live`` is dropped (``None``: the members are ``members``) and copied back from ``members``
    by the next `join` or `leave`, so that the many small groups keep one set each, not two.
    A large group keeps its set, so that a flush copies it once.

    Once published, a group also records its net member changes since the last flush
    (``pending``: member -> joined?), so a patch costs O(change), not O(group); and a large group
    keeps per-node member counts (``nodes``), so its span is known without a scan. Members change
    only through `join` and `leave`.
    """

    __slots__ = (
        "ag_obj",
        "ag_refs",
        "ag_span",
        "atg_refs",
        "atg_send_span",
        "atg_span",
        "key",
        "live",
        "members",
        "name",
        "namespaces",
        "nodes",
        "ns_selector",
        "pending",
        "pod_selector",
        "published_ag",
        "published_atg",
    )

    def __init__(self, key: GroupKey, name: str) -> None:
        self.key = key
        _, self.pod_selector, self.ns_selector = key
        self.name = name
        self.live: set[GroupMember] | None = set()
        self.pending: dict[GroupMember, bool] | None = None
        self.nodes: dict[str, int] | None = None
        # Matching namespaces, for cluster groups only (a shared empty value otherwise).
        self.namespaces: set[NamespaceState] = _NO_NAMESPACES if key[2] is None else set()
        # Controller state: referencing policy UIDs (allocated on first use: most groups are
        # only ever used in one of the two roles), last published members and spans.
        self.atg_refs: Refs = NO_REFS
        self.ag_refs: Refs = NO_REFS
        self.members = NO_MEMBERS
        # Nodes hosting members (drives the policy span) and nodes the AppliedToGroup is sent
        # to: every node of every policy referencing it (a superset).
        self.atg_span = NO_NODES
        self.atg_send_span = NO_NODES
        self.ag_span = NO_NODES
        self.published_ag = False
        self.published_atg = False
        self.ag_obj: AddressGroup | None = None  # the published AddressGroup

    def entry(self, kind: Kind) -> Entry:
        """The store's entry: the published AddressGroup, or the AppliedToGroup (built on
        demand: agents receive per-node copies of it anyway), with its span."""
        if kind is Kind.ADDRESS_GROUP:
            assert self.ag_obj is not None
            return (self.ag_obj, self.ag_span)
        return (AppliedToGroup(self.name, self.members), self.atg_send_span)

    def __repr__(self) -> str:
        return f"SelectorGroup({self.name} {self.key!r})"

    def current(self) -> set[GroupMember] | frozenset[GroupMember]:
        """The members now (``members`` if nothing changed since the last flush)."""
        live = self.live
        return self.members if live is None else live

    def join(self, member: GroupMember) -> None:
        live = self.live
        if live is None:
            live = self.live = set(self.members)
        live.add(member)
        if self.published_ag or self.published_atg:
            pending = self.pending
            if pending is None:
                self.pending = {member: True}
            elif pending.get(member) is False:
                del pending[member]
            else:
                pending[member] = True
        nodes = self.nodes
        if nodes is not None:
            nodes[member.node] = nodes.get(member.node, 0) + 1

    def leave(self, member: GroupMember) -> None:
        live = self.live
        if live is None:
            live = self.live = set(self.members)
        live.discard(member)
        if self.published_ag or self.published_atg:
            pending = self.pending
            if pending is None:
                self.pending = {member: False}
            elif pending.get(member) is True:
                del pending[member]
            else:
                pending[member] = False
        nodes = self.nodes
        if nodes is not None:
            left = nodes[member.node] - 1
            if left:
                nodes[member.node] = left
            else:
                del nodes[member.node]

    def span(self) -> frozenset[str]:
        """The nodes hosting members (counted incrementally once the group is large)."""
        nodes = self.nodes
        if nodes is None:
            live = self.current()
            if len(live) < LARGE_GROUP:
                return frozenset([m.node for m in live]) if live else NO_NODES
            nodes = self.nodes = {}
            for m in live:
                nodes[m.node] = nodes.get(m.node, 0) + 1
        return frozenset(nodes)


# Groups under one index key: a tuple while small (a namespace has one or two groups per key:
# 48 bytes instead of a list's 88), a list beyond that so that adding stays O(1).
Bucket = tuple["SelectorGroup", ...] | list["SelectorGroup"]
_SMALL_BUCKET = 8


def _bucket_add(bucket: Bucket, group: SelectorGroup) -> Bucket:
    if isinstance(bucket, list):
        bucket.append(group)
        return bucket
    if len(bucket) < _SMALL_BUCKET:
        return (*bucket, group)
    return [*bucket, group]


def _bucket_remove(bucket: Bucket, group: SelectorGroup) -> Bucket:
    if isinstance(bucket, list):
        bucket.remove(group)
        return bucket
    return tuple(g for g in bucket if g is not group)


class GroupIndex:
    """Groups filed under their selector's index key; ``candidates`` is a superset of matches."""

    __slots__ = ("by_key", "size", "unindexed")

    def __init__(self) -> None:
        self.by_key: dict[str, Bucket] | None = None
        self.unindexed: Bucket = ()
        self.size = 0

    def add(self, group: SelectorGroup, selector: Selector) -> None:
        self.size += 1
        key = selector.index_key
        if key is None:
            self.unindexed = _bucket_add(self.unindexed, group)
            return
        if self.by_key is None:
            self.by_key = {}
        self.by_key[key] = _bucket_add(self.by_key.get(key, ()), group)

    def remove(self, group: SelectorGroup, selector: Selector) -> None:
        self.size -= 1
        key = selector.index_key
        if key is None:
            self.unindexed = _bucket_remove(self.unindexed, group)
            return
        assert self.by_key is not None
        bucket = _bucket_remove(self.by_key[key], group)
        if bucket:
            self.by_key[key] = bucket
        else:
            del self.by_key[key]

    def candidates(self, labels: Labels) -> list[SelectorGroup]:
        found = list(self.unindexed)
        by_key = self.by_key
        bucket: Bucket | None
        if by_key:
            if len(by_key) < len(labels):
                for key, bucket in by_key.items():
                    if key in labels:
                        found.extend(bucket)
            else:
                for key in labels:
                    bucket = by_key.get(key)
                    if bucket is not None:
                        found.extend(bucket)
        return found


class Grouping:
    """The membership engine: pods, namespaces and selector groups, with their indexes."""

    def __init__(self) -> None:
        self.namespaces: dict[str, NamespaceState] = {}
        self.groups: dict[GroupKey, SelectorGroup] = {}
        self.dirty: set[SelectorGroup] = set()
        self._selectors: dict[SelectorKey, Selector] = {}
        self._cluster_index = GroupIndex()  # cluster-scoped groups by namespaceSelector
        # New namespace-scoped groups whose members are not computed yet (`scan_new`), by
        # namespace: a batch creating many groups in one namespace scans its pods once.
        self._unscanned: dict[NamespaceState, list[SelectorGroup]] = {}
        # key -> value -> namespace names; built when the first namespaceSelector needs it.
        self._ns_labels: dict[str, dict[str, set[str]]] | None = None

    # -- selectors and groups -------------------------------------------------------------

    def selector(self, raw: dict[str, Any] | None) -> Selector:
        key = normalize_selector(raw)
        sel = self._selectors.get(key)
        if sel is None:
            sel = self._selectors[key] = Selector(key)
        return sel

    def group(self, namespace: str, pod: Selector, ns: Selector | None) -> SelectorGroup:
        """The group of this selector, created (and its members computed) on first use."""
        key: GroupKey = (namespace, pod, ns)
        group = self.groups.get(key)
        if group is None:
            group = self._create(key)
        return group

    def _create(self, key: GroupKey) -> SelectorGroup:
        namespace, pod_sel, ns_sel = key
        group = SelectorGroup(key, group_name(group_text(namespace, pod_sel, ns_sel)))
        self.groups[key] = group
        pod_sel.refs += 1
        self.dirty.add(group)
        if ns_sel is None:
            ns = self._namespace(namespace)
            ns.local.add(group, pod_sel)
            # Members are computed by `scan_new`, before anything reads them (the flush); pod
            # events meanwhile join and leave the group as usual, the scan replaces `live`.
            self._unscanned.setdefault(ns, []).append(group)
            return group
        ns_sel.refs += 1
        self._cluster_index.add(group, ns_sel)
        matches = pod_sel.matches
        live = group.live
        assert live is not None  # a new group
        for scope in self._namespaces_matching(ns_sel):
            if scope.cluster_groups is _NO_GROUPS:
                scope.cluster_groups = {group}
            else:
                scope.cluster_groups.add(group)
            group.namespaces.add(scope)
            for pod in scope.pods.values():
                member = pod.member
                if member is not None and matches(pod.labels):
                    live.add(member)
        return group

    def scan_new(self) -> None:
        """Compute the members of the namespace-scoped groups created since the last call.

        One pass over a namespace's pods serves all its new groups: those whose selector has
        an ``In`` index key are found through the pod's own labels (key, value), so creating
        g groups in a namespace of p pods costs O(p + matches), not O(g * p)."""
        unscanned, self._unscanned = self._unscanned, {}
        groups = self.groups
        Matcher = tuple[Callable[[Labels], bool], set[GroupMember]]
        for ns, created in unscanned.items():
            by_label: dict[tuple[str, str], list[Matcher]] = {}
            others: list[Matcher] = []
            for g in created:
                if groups.get(g.key) is not g:
                    continue  # destroyed meanwhile
                sel = g.pod_selector
                live = g.live = set()
                if sel.index_key is None or sel.index_values is None or len(created) == 1:
                    others.append((sel.matches, live))
                    continue
                for value in sel.index_values:
                    by_label.setdefault((sel.index_key, value), []).append((sel.matches, live))
            pods = ns.pods.values()
            for matches, live in others:
                for pod in pods:
                    member = pod.member
                    if member is not None and matches(pod.labels):
                        live.add(member)
            if by_label:
                get = by_label.get
                for pod in pods:
                    member = pod.member
                    if member is None:
                        continue
                    labels = pod.labels
                    for item in labels.items():
                        for matches, live in get(item, ()):
                            if matches(labels):
                                live.add(member)

    def destroy(self, group: SelectorGroup) -> None:
        """Forget a group no policy references any more."""
        group.live = None
        group.members = NO_MEMBERS
        namespace, pod_sel, ns_sel = group.key
        if ns_sel is None:
            ns = self.namespaces[namespace]
            ns.local.remove(group, pod_sel)
            self._forget_if_idle(ns)
        else:
            self._cluster_index.remove(group, ns_sel)
            for ns in group.namespaces:
                ns.cluster_groups.discard(group)
            group.namespaces = _NO_NAMESPACES
            self._release_selector(ns_sel)
        self._release_selector(pod_sel)
        del self.groups[group.key]
        self.dirty.discard(group)

    def _release_selector(self, sel: Selector) -> None:
        sel.refs -= 1
        if sel.refs == 0:
            del self._selectors[sel.key]

    def _namespaces_matching(self, sel: Selector) -> Iterable[NamespaceState]:
        names: Iterable[str]
        if sel.index_key is None:
            candidates: Iterable[NamespaceState] = self.namespaces.values()
        else:
            if self._ns_labels is None:
                self._ns_labels = {}
                for ns in self.namespaces.values():
                    if ns.exists:
                        self._index_namespace(ns)
            by_value = self._ns_labels.get(sel.index_key, {})
            if sel.index_values is not None:
                names = [n for v in sel.index_values for n in by_value.get(v, ())]
            else:
                names = [n for ns_names in by_value.values() for n in ns_names]
            candidates = [self.namespaces[n] for n in names]
        return [ns for ns in candidates if ns.exists and sel.matches(ns.labels)]

    # -- namespaces -----------------------------------------------------------------------

    def _namespace(self, name: str) -> NamespaceState:
        ns = self.namespaces.get(name)
        if ns is None:
            ns = self.namespaces[name] = NamespaceState(name)
        return ns

    def _forget_if_idle(self, ns: NamespaceState) -> None:
        if ns.is_idle():
            del self.namespaces[ns.name]

    def upsert_namespace(self, name: str, labels: Labels | None) -> None:
        labels = labels or _EMPTY
        ns = self._namespace(name)
        if ns.exists and ns.labels == labels:
            return
        if ns.exists:
            self._unindex_namespace(ns)
        ns.exists = True
        ns.labels = labels
        if self._ns_labels is not None:
            self._index_namespace(ns)
        if self._cluster_index.size:
            self._set_cluster_groups(
                ns,
                {
                    g
                    for g in self._cluster_index.candidates(labels)
                    if g.ns_selector is not None and g.ns_selector.matches(labels)
                },
            )

    def remove_namespace(self, name: str) -> None:
        ns = self.namespaces.get(name)
        if ns is None or not ns.exists:
            return
        self._unindex_namespace(ns)
        self._set_cluster_groups(ns, _NO_GROUPS)
        ns.exists = False
        ns.labels = _EMPTY
        self._forget_if_idle(ns)

    def _index_namespace(self, ns: NamespaceState) -> None:
        index = self._ns_labels
        assert index is not None
        for key, value in ns.labels.items():
            by_value = index.get(key)
            if by_value is None:
                by_value = index[key] = {}
            names = by_value.get(value)
            if names is None:
                by_value[value] = {ns.name}
            else:
                names.add(ns.name)

    def _unindex_namespace(self, ns: NamespaceState) -> None:
        index = self._ns_labels
        if index is None:
            return
        for key, value in ns.labels.items():
            by_value = index[key]
            names = by_value[value]
            names.discard(ns.name)
            if not names:
                del by_value[value]
                if not by_value:
                    del index[key]

    def _set_cluster_groups(self, ns: NamespaceState, new: set[SelectorGroup]) -> None:
        old = ns.cluster_groups
        if new == old:
            return
        for group in old - new:
            group.namespaces.discard(ns)
            matches = group.pod_selector.matches
            for pod in ns.pods.values():
                if pod.member is not None and matches(pod.labels):
                    group.leave(pod.member)
                    self.dirty.add(group)
        for group in new - old:
            group.namespaces.add(ns)
            matches = group.pod_selector.matches
            for pod in ns.pods.values():
                if pod.member is not None and matches(pod.labels):
                    group.join(pod.member)
                    self.dirty.add(group)
        ns.cluster_groups = new or _NO_GROUPS

    # -- pods -----------------------------------------------------------------------------

    @staticmethod
    def groups_of(ns: NamespaceState, labels: Labels) -> list[SelectorGroup]:
        """The groups a counted pod of ``ns`` with these labels is in."""
        found = [g for g in ns.local.candidates(labels) if g.pod_selector.matches(labels)]
        for g in ns.cluster_groups:
            if g.pod_selector.matches(labels):
                found.append(g)
        return found

    def upsert_pod(
        self, namespace: str, name: str, labels: Labels | None, member: GroupMember | None
    ) -> None:
        labels = labels or _EMPTY
        ns = self._namespace(namespace)
        pod = ns.pods.get(name)
        if pod is None:
            pod = ns.pods[name] = PodState(name)
        else:
            old_member = pod.member
            if old_member == member:
                if pod.labels == labels:
                    return
                member = old_member  # keep one object per value: cheaper sets, shared memory
            elif old_member is not None and member is not None and pod.labels == labels:
                pod.member = member  # same groups, new member value (IP, node or ports changed)
                groups = self.groups_of(ns, labels)
                for g in groups:
                    g.leave(old_member)
                    g.join(member)
                self.dirty.update(groups)
                return
        old_member = pod.member
        old_groups = () if old_member is None else self.groups_of(ns, pod.labels)
        pod.labels = labels
        pod.member = member
        new_groups = () if member is None else self.groups_of(ns, labels)
        dirty = self.dirty
        if old_member is not None:
            for g in old_groups:
                g.leave(old_member)
                dirty.add(g)
        if member is not None:
            for g in new_groups:
                g.join(member)
                dirty.add(g)

    def remove_pod(self, namespace: str, name: str) -> None:
        ns = self.namespaces.get(namespace)
        if ns is None:
            return
        pod = ns.pods.pop(name, None)
        if pod is None:
            return
        if pod.member is not None:
            for g in self.groups_of(ns, pod.labels):
                g.leave(pod.member)
                self.dirty.add(g)
        self._forget_if_idle(ns)
