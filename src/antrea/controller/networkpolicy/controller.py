"""The NetworkPolicy compiler: Kubernetes objects in, internal objects with spans out.

Pure and synchronous: the controller process feeds it informer events (decoded API dicts) and
serves what lands in `store`; listeners receive every `Change`. No I/O, no threads, no clock.

Each event updates the membership engine (`grouping.Grouping`) and records what became dirty:
groups whose members or references changed, policies that were (re)compiled or deleted. Then a
*flush* turns the dirty sets into objects, in dependency order:

1. groups: rebuild the member set, and for an AppliedToGroup its span (nodes of its members);
2. policies whose own object or one of whose AppliedToGroups' span changed: span = union of
   their AppliedToGroups' spans;
3. AddressGroups referenced by a policy whose span or references changed: span = union of the
   spans of the policies using them;
   AppliedToGroups likewise (their sent span, ``atg_send_span``; their member span, ``atg_span``,
   is what makes the policy span): an agent realizes a rule only once it has every group the
   rule names, so a rule-level AppliedToGroup with no member on a node of its policy (one
   namespace's copy of a ``namespaces: {match: Self}`` rule) must still reach that node, empty;
4. store updates and change notifications: group additions and modifications first, then policy
   additions and modifications, then policy deletions, then group deletions (so a consumer never
   sees a policy before the groups it names, nor a group removed before its last policy).

Outside `batch()` every event flushes immediately; inside, the flush happens once when the
outermost batch exits. Use a batch for the initial lists (upstream likewise waits for the informer
caches to sync before computing): each group's member set is then built once, not once per pod.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import structlog

from antrea.apis.controlplane.types import (
    AddressGroup,
    AddressGroupPatch,
    AppliedToGroup,
    ControlPlaneObject,
    GroupMember,
    Kind,
    NetworkPolicy,
)
from antrea.controller.networkpolicy.compile import (
    LOGGING_ANNOTATION,
    CompiledPolicy,
    compile_policy,
)
from antrea.controller.networkpolicy.compile_antrea import (
    AntreaContext,
    InvalidAntreaPolicy,
    compile_antrea_policy,
    fail_closed_policy,
    uses_self,
)
from antrea.controller.networkpolicy.grouping import (
    LARGE_GROUP,
    NO_MEMBERS,
    Grouping,
    Refs,
    SelectorGroup,
    add_ref,
    drop_ref,
    ref_uids,
)
from antrea.controller.networkpolicy.members import pod_member
from antrea.controller.networkpolicy.store import EMPTY_SPAN, Change, ComputedStore, Entry, Span
from antrea.util import gcpause

# New tracked objects left by one compiler batch above which they are frozen (see `batch`).
FREEZE_AFTER_OBJECTS = gcpause.FREEZE_AFTER_OBJECTS

log = structlog.get_logger(__name__)

Listener = Callable[[Change], None]
# Builds a Change from a tuple without the NamedTuple's Python-level __new__ (hot in the flush).
_change = tuple.__new__
# What a group looked like before a flush touched it: members, ATG (sent) span, AG span.
_GroupBefore = tuple[frozenset[GroupMember], Span, Span, bool, bool]
# The same for a group never published (none of the old values is read then): one shared tuple,
# as the initial sync publishes every group.
_UNPUBLISHED: _GroupBefore = (NO_MEMBERS, EMPTY_SPAN, EMPTY_SPAN, False, False)


def _before(g: SelectorGroup) -> _GroupBefore:
    if g.published_ag or g.published_atg:
        return (g.members, g.atg_send_span, g.ag_span, g.published_ag, g.published_atg)
    return _UNPUBLISHED


class _Policy:
    """A compiled policy (its parts, not the `CompiledPolicy` tuple: 5 MB less at 75,000
    policies), its span, and what was last published (the store's entry)."""

    __slots__ = ("address", "applied_to", "policy", "published", "published_span", "span", "uid")

    def __init__(self, uid: str, compiled: CompiledPolicy) -> None:
        self.uid = uid
        self.policy, self.applied_to, self.address = compiled
        self.span: Span = EMPTY_SPAN
        self.published: NetworkPolicy | None = None
        self.published_span: Span = EMPTY_SPAN

    def entry(self, kind: Kind) -> Entry:
        assert self.published is not None
        return (self.published, self.published_span)


class NetworkPolicyController:
    """Compile Pods, Namespaces and NetworkPolicies into the `ComputedStore`.

    Event methods take the decoded Kubernetes objects (dicts as the API's JSON). The compiler
    keeps references to their ``labels`` dicts: do not mutate an object after passing it in.
    """

    def __init__(self) -> None:
        self.store = ComputedStore()
        self._grouping = Grouping()
        self._policies: dict[str, _Policy] = {}
        self._listeners: list[Listener] = []
        self._batch_depth = 0
        self._dirty_policies: set[str] = set()  # compiled, recompiled or deleted
        self._deleted: dict[str, _Policy] = {}  # deleted since the last flush, by UID
        # Antrea-native policies by UID (raw objects: recompiled when a Tier, a group or, for
        # `namespaces: {match: Self}`, the namespace set changes), and what they depend on.
        self._antrea: dict[str, dict[str, Any]] = {}
        self.antrea_ctx = AntreaContext(namespaces={})
        self._ns_names: dict[str, None] = {}
        # Kubernetes NetworkPolicies by UID (raw: recompiled when their Namespace's audit
        # logging annotation changes) and the namespaces that have it.
        self._k8s_raw: dict[str, dict[str, Any]] = {}
        self._ns_logging: dict[str, bool] = {}
        self.antrea_errors: dict[str, str] = {}  # UID -> why it is realized fail closed

    # -- consumers ------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` for every change, synchronously, after the store is updated.

        Each listener receives a flush's changes in order; if it raises, the error is logged and
        it misses the rest of that flush (other listeners are unaffected).
        """
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Defer computation until the outermost batch exits (e.g. the initial lists).

        The cyclic garbage collector is paused for the outermost batch: a batch allocates
        hundreds of thousands of long-lived objects and no garbage cycles, and every collection
        would traverse all of them (it more than doubles the time of the scale benchmark).
        A batch that leaves more than `FREEZE_AFTER_OBJECTS` new tracked objects (a policy of
        ~2,000 rules or more) freezes what exists
        (`gc.freeze`, O(1)): the next collections would otherwise traverse it all again, on
        the way of the agents' streams (a 50-120 ms full collection in a 15,000-rule burst).
        """
        outermost = not self._batch_depth
        # (an inner batch finds the collector off: `paused` leaves it to the outermost)
        with gcpause.paused(FREEZE_AFTER_OBJECTS):
            self._batch_depth += 1
            try:
                yield
            finally:
                self._batch_depth -= 1
                if outermost:
                    self.flush()

    # -- pods -----------------------------------------------------------------------------

    def add_pod(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        self._grouping.upsert_pod(
            meta.get("namespace", ""), meta["name"], meta.get("labels"), pod_member(pod)
        )
        self._changed()

    def update_pod(self, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        self.add_pod(new)

    def delete_pod(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        self._grouping.remove_pod(meta.get("namespace", ""), meta["name"])
        self._changed()

    # -- namespaces -----------------------------------------------------------------------

    def add_namespace(self, namespace: dict[str, Any]) -> None:
        meta = namespace["metadata"]
        self._grouping.upsert_namespace(meta["name"], meta.get("labels"))
        logged = (meta.get("annotations") or {}).get(LOGGING_ANNOTATION) == "true"
        if self._ns_logging.get(meta["name"], False) != logged:
            self._ns_logging[meta["name"]] = logged
            self._recompile_k8s(meta["name"])
        if meta["name"] not in self._ns_names:
            self._ns_names[meta["name"]] = None
            self._namespace_set_changed()
        self._changed()

    def update_namespace(self, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        self.add_namespace(new)

    def delete_namespace(self, namespace: dict[str, Any]) -> None:
        self._grouping.remove_namespace(namespace["metadata"]["name"])
        self._ns_logging.pop(namespace["metadata"]["name"], None)
        if self._ns_names.pop(namespace["metadata"]["name"], 0) is None:
            self._namespace_set_changed()
        self._changed()

    def _namespace_set_changed(self) -> None:
        self.antrea_ctx.namespaces = self._ns_names
        for uid, obj in self._antrea.items():
            if uses_self(obj):
                self._compile_antrea(uid, obj)

    # -- network policies -----------------------------------------------------------------

    def _recompile_k8s(self, namespace: str) -> None:
        """The namespace's logging annotation changed: its policies' rules change."""
        for np in list(self._k8s_raw.values()):
            if (np.get("metadata") or {}).get("namespace") == namespace:
                self.add_network_policy(np)

    def add_network_policy(self, np: dict[str, Any]) -> None:
        try:
            uid: str = np["metadata"]["uid"]
            ns = np["metadata"].get("namespace", "")
            compiled = compile_policy(
                np, self._grouping, enable_logging=self._ns_logging.get(ns, False)
            )
            self._k8s_raw[uid] = np
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            meta = np.get("metadata", {})
            # Only possible for objects the API server would refuse; a previous version of the
            # policy, if any, stays in force.
            log.warning(
                "network_policy_rejected",
                namespace=meta.get("namespace"),
                name=meta.get("name"),
                error=repr(exc),
            )
            self._changed()  # groups the failed compilation created are collected
            return
        self._install(uid, compiled)

    def _install(self, uid: str, compiled: CompiledPolicy) -> None:
        state = self._policies.get(uid)
        old: CompiledPolicy | None = None
        if state is None:
            state = self._deleted.pop(uid, None)  # deleted and re-added within one batch
            if state is None:
                state = _Policy(uid, compiled)
            state.policy, state.applied_to, state.address = compiled
            self._policies[uid] = state
        else:
            old = CompiledPolicy(state.policy, state.applied_to, state.address)
            state.policy, state.applied_to, state.address = compiled
        self._reference(uid, old, compiled)
        self._dirty_policies.add(uid)
        self._changed()

    def update_network_policy(self, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        if old is not None and old["metadata"]["uid"] != new["metadata"]["uid"]:
            self.delete_network_policy(old)
        self.add_network_policy(new)

    def delete_network_policy(self, np: dict[str, Any]) -> None:
        uid = np["metadata"]["uid"]
        self._k8s_raw.pop(uid, None)
        state = self._policies.pop(uid, None)
        if state is not None:
            self._reference(uid, state, None)
            self._dirty_policies.add(uid)
            self._deleted[uid] = state
        self._changed()

    # -- Antrea-native policies, tiers, groups ---------------------------------------------

    def add_cluster_network_policy(self, obj: dict[str, Any]) -> None:
        uid: str = obj["metadata"]["uid"]
        self._antrea[uid] = obj
        self._compile_antrea(uid, obj)
        self._changed()

    def update_cluster_network_policy(
        self, old: dict[str, Any] | None, new: dict[str, Any]
    ) -> None:
        if old is not None and old["metadata"]["uid"] != new["metadata"]["uid"]:
            self.delete_network_policy(old)
        self.add_cluster_network_policy(new)

    def delete_cluster_network_policy(self, obj: dict[str, Any]) -> None:
        uid = obj["metadata"]["uid"]
        self._antrea.pop(uid, None)
        self.antrea_errors.pop(uid, None)
        self.delete_network_policy(obj)

    # The namespaced Antrea NetworkPolicy: the same code (scope comes from metadata.namespace).
    add_antrea_network_policy = add_cluster_network_policy
    update_antrea_network_policy = update_cluster_network_policy
    delete_antrea_network_policy = delete_cluster_network_policy

    def _compile_antrea(self, uid: str, obj: dict[str, Any]) -> None:
        compiled: CompiledPolicy | None
        try:
            compiled = compile_antrea_policy(obj, self._grouping, self.antrea_ctx)
            self.antrea_errors.pop(uid, None)
        except (InvalidAntreaPolicy, KeyError, TypeError, ValueError, AttributeError) as exc:
            meta = obj.get("metadata", {})
            self.antrea_errors[uid] = str(exc)
            log.warning(
                "antrea_policy_invalid",
                namespace=meta.get("namespace"),
                name=meta.get("name"),
                error=str(exc),
            )
            try:
                compiled = fail_closed_policy(obj, self._grouping, self.antrea_ctx)
            except Exception:
                log.exception("antrea_policy_fail_closed_failed", name=meta.get("name"))
                compiled = None
        if compiled is None:
            state = self._policies.pop(uid, None)
            if state is not None:
                self._reference(uid, state, None)
                self._dirty_policies.add(uid)
                self._deleted[uid] = state
            return
        self._install(uid, compiled)

    def referenced_tiers(self) -> set[str]:
        """Names of the Tiers the Antrea-native policies name (the default: application)."""
        out: set[str] = set()
        for obj in self._antrea.values():
            tier = (obj.get("spec") or {}).get("tier") or "application"
            if isinstance(tier, str):
                out.add(tier)
        return out

    def _recompile_antrea(self) -> None:
        for uid, obj in self._antrea.items():
            self._compile_antrea(uid, obj)
        self._changed()

    def add_tier(self, tier: dict[str, Any]) -> None:
        prio = (tier.get("spec") or {}).get("priority")
        name = tier["metadata"]["name"]
        if isinstance(prio, int) and not isinstance(prio, bool):
            self.antrea_ctx.tiers[name] = prio
        else:
            self.antrea_ctx.tiers.pop(name, None)
        self._recompile_antrea()

    def update_tier(self, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        self.add_tier(new)

    def delete_tier(self, tier: dict[str, Any]) -> None:
        self.antrea_ctx.tiers.pop(tier["metadata"]["name"], None)
        self._recompile_antrea()

    def add_cluster_group(self, group: dict[str, Any]) -> None:
        self.antrea_ctx.cluster_groups[group["metadata"]["name"]] = group.get("spec") or {}
        self._recompile_antrea()

    def update_cluster_group(self, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        self.add_cluster_group(new)

    def delete_cluster_group(self, group: dict[str, Any]) -> None:
        self.antrea_ctx.cluster_groups.pop(group["metadata"]["name"], None)
        self._recompile_antrea()

    def add_group(self, group: dict[str, Any]) -> None:
        meta = group["metadata"]
        self.antrea_ctx.groups[(meta.get("namespace", ""), meta["name"])] = group.get("spec") or {}
        self._recompile_antrea()

    def update_group(self, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        self.add_group(new)

    def delete_group(self, group: dict[str, Any]) -> None:
        meta = group["metadata"]
        self.antrea_ctx.groups.pop((meta.get("namespace", ""), meta["name"]), None)
        self._recompile_antrea()

    # -- computation ----------------------------------------------------------------------

    def _reference(
        self, uid: str, old: CompiledPolicy | _Policy | None, new: CompiledPolicy | None
    ) -> None:
        ref_dirty = self._grouping.dirty  # references changed: the group is recomputed
        if old is not None:
            for g in old.applied_to:
                g.atg_refs = drop_ref(g.atg_refs, uid)
                ref_dirty.add(g)
            for g in old.address:
                g.ag_refs = drop_ref(g.ag_refs, uid)
                ref_dirty.add(g)
        if new is not None:
            for g in new.applied_to:
                g.atg_refs = add_ref(g.atg_refs, uid)
                ref_dirty.add(g)
            for g in new.address:
                g.ag_refs = add_ref(g.ag_refs, uid)
                ref_dirty.add(g)

    def _changed(self) -> None:
        if not self._batch_depth:
            self.flush()

    def flush(self) -> None:
        """Turn everything dirty into objects, spans, store updates and changes."""
        grouping = self._grouping
        grouping.scan_new()
        groups = grouping.dirty
        grouping.dirty = set()
        dirty_policies = self._dirty_policies
        self._dirty_policies = set()
        deleted = self._deleted
        self._deleted = {}
        if not groups and not dirty_policies:
            return

        before: dict[SelectorGroup, _GroupBefore] = {}
        patches: dict[SelectorGroup, AddressGroupPatch] = {}
        # Grows from the dirty policies (no copy: a policy whose span may have changed is
        # recomputed like a recompiled one, which only costs a comparison).
        policy_span_dirty = dirty_policies
        ag_span_dirty: set[SelectorGroup] = set()
        atg_span_dirty: set[SelectorGroup] = set()
        # 1. members and AppliedToGroup spans.
        for g in groups:
            old_members = g.members
            published = g.published_ag or g.published_atg
            before[g] = (
                (old_members, g.atg_send_span, g.ag_span, g.published_ag, g.published_atg)
                if published
                else _UNPUBLISHED
            )
            pending = g.pending
            g.pending = None
            if not g.atg_refs and not g.ag_refs:
                continue
            live = g.live
            if not published or pending:
                assert live is not None  # unpublished, or changed since
                members = g.members = frozenset(live) if live else NO_MEMBERS
                if len(live) < LARGE_GROUP:
                    g.live = None  # one copy of a small group's members: see SelectorGroup
            else:
                members = old_members
                if live is not None and len(live) < LARGE_GROUP:
                    g.live = None  # its changes cancelled out: live == members
            if published and pending:
                patches[g] = AddressGroupPatch(
                    g.name,
                    frozenset([m for m, joined in pending.items() if joined]),
                    frozenset([m for m, joined in pending.items() if not joined]),
                )
            if g.atg_refs:
                if members is not old_members or not g.published_atg:
                    span = g.span()
                    if span != g.atg_span:
                        g.atg_span = span
                        policy_span_dirty.update(ref_uids(g.atg_refs))
            elif g.atg_span:
                g.atg_span = EMPTY_SPAN
            if g.ag_refs:
                ag_span_dirty.add(g)
            if g.atg_refs:
                atg_span_dirty.add(g)
        del groups  # all in `before` now: a large set less at the flush's peak
        # 2. policy spans.
        policies = self._policies
        for uid in policy_span_dirty:
            state = policies.get(uid)
            if state is None:
                continue
            atgs = state.applied_to
            span = (
                atgs[0].atg_span
                if len(atgs) == 1
                else frozenset().union(*(g.atg_span for g in atgs))
            )
            if span != state.span or uid in dirty_policies:
                state.span = span
                ag_span_dirty.update(state.address)
                atg_span_dirty.update(atgs)

        # 3. AddressGroup spans.
        def refs_span(refs: Refs) -> Span:
            """The union of the spans of the policies in ``refs`` (one policy's own set)."""
            if isinstance(refs, str):
                return policies[refs].span
            return frozenset().union(*(policies[uid].span for uid in refs))

        for g in ag_span_dirty:
            if g not in before:
                before[g] = _before(g)
            g.ag_span = refs_span(g.ag_refs)
        # 3b. AppliedToGroup sent spans: the union of their policies' spans (a superset of
        # their member span, which each of those policy spans contains).
        for g in atg_span_dirty:
            if g not in before:
                before[g] = _before(g)
            g.atg_send_span = refs_span(g.atg_refs)
        del ag_span_dirty, atg_span_dirty
        # 4. store and changes.
        self._publish(before, patches, policy_span_dirty, deleted)

    def _publish(
        self,
        before: dict[SelectorGroup, _GroupBefore],
        patches: dict[SelectorGroup, AddressGroupPatch],
        policy_uids: set[str],
        deleted: dict[str, _Policy],
    ) -> None:
        # Additions (all of the initial sync) are recorded by name only and their changes built
        # from the store while they are delivered: a list of 200,000 `Change` tuples is most of
        # the memory a large flush needs beyond its results.
        ag_added: list[str] = []
        atg_added: list[str] = []
        changes: list[Change] = []  # modifications (groups, then policies)
        group_deletes: list[Change] = []
        to_destroy: list[SelectorGroup] = []
        ag_store = self.store._objects[Kind.ADDRESS_GROUP]
        atg_store = self.store._objects[Kind.APPLIED_TO_GROUP]
        AG, ATG = Kind.ADDRESS_GROUP, Kind.APPLIED_TO_GROUP
        for g, (old_members, old_atg_span, old_ag_span, was_ag, was_atg) in before.items():
            members = g.members
            name = g.name
            patch = patches.get(g)
            # Additions (all of the initial sync) inline; modifications and deletions below.
            if g.ag_refs and not was_ag:
                g.ag_obj = AddressGroup(name, members)
                ag_store[name] = g
                ag_added.append(name)
            elif g.ag_refs or was_ag:
                self._publish_view(
                    AG, g, wanted=bool(g.ag_refs), old_members=old_members,
                    old_span=old_ag_span, span=g.ag_span, patch=patch,
                    changes=changes, deletes=group_deletes,
                )  # fmt: skip
            if g.atg_refs and not was_atg:
                atg_store[name] = g
                atg_added.append(name)
            elif g.atg_refs or was_atg:
                self._publish_view(
                    ATG, g, wanted=bool(g.atg_refs), old_members=old_members,
                    old_span=old_atg_span, span=g.atg_send_span, patch=patch,
                    changes=changes, deletes=group_deletes,
                )  # fmt: skip
            g.published_ag = bool(g.ag_refs)
            g.published_atg = bool(g.atg_refs)
            if not g.ag_refs:
                g.ag_span = EMPTY_SPAN
            if not g.atg_refs:
                g.atg_span = EMPTY_SPAN
                g.atg_send_span = EMPTY_SPAN
                if not g.ag_refs:
                    to_destroy.append(g)
        np_added: list[str] = []
        policy_deletes = self._publish_policies(policy_uids, deleted, np_added, changes)
        for g in to_destroy:
            self._grouping.destroy(g)
        added = ((AG, ag_added), (ATG, atg_added))
        for listener in self._listeners:
            try:
                for change in self._changes(added, changes, np_added):
                    listener(change)
                for change in policy_deletes:
                    listener(change)
                for change in group_deletes:
                    listener(change)
            except Exception:  # a consumer's bug must not desynchronize the others
                log.exception("change_listener_failed", listener=repr(listener))

    def _changes(
        self,
        group_added: tuple[tuple[Kind, list[str]], ...],
        changes: list[Change],
        np_added: list[str],
    ) -> Iterator[Change]:
        """The additions (from the store) and modifications of a flush, in delivery order."""
        objects = self.store._objects
        for kind, names in group_added:
            entries = objects[kind]
            for name in names:
                obj, span = entries[name].entry(kind)
                yield _change(Change, (kind, name, None, obj, EMPTY_SPAN, span, None))
        yield from changes
        NP = Kind.NETWORK_POLICY
        entries = objects[NP]
        for uid in np_added:
            obj, span = entries[uid].entry(NP)
            yield _change(Change, (NP, uid, None, obj, EMPTY_SPAN, span, None))

    def _publish_view(
        self,
        kind: Kind,
        g: SelectorGroup,
        *,
        wanted: bool,
        old_members: frozenset[GroupMember],
        old_span: Span,
        span: Span,
        patch: AddressGroupPatch | None,
        changes: list[Change],
        deletes: list[Change],
    ) -> None:
        """Modify or delete a published view (AddressGroup or AppliedToGroup) of a group.

        The store serves the group's state, which already holds the new members and spans: the
        old object is the published AddressGroup, or an AppliedToGroup of the old members."""
        name = g.name
        is_ag = kind is Kind.ADDRESS_GROUP
        old_obj: ControlPlaneObject | None = (
            g.ag_obj if is_ag else AppliedToGroup(name, old_members)
        )
        if wanted:
            changed = g.members is not old_members
            if changed or span != old_span:
                obj = old_obj
                if changed and is_ag:
                    obj = g.ag_obj = AddressGroup(name, g.members)
                elif changed:
                    obj = AppliedToGroup(name, g.members)
                changes.append(Change(kind, name, old_obj, obj, old_span, span, patch))
        else:
            self.store._delete(kind, name)
            if is_ag:
                g.ag_obj = None
            deletes.append(Change(kind, name, old_obj, None, old_span, EMPTY_SPAN, None))

    def _publish_policies(
        self, uids: set[str], deleted: dict[str, _Policy], added: list[str], changes: list[Change]
    ) -> list[Change]:
        """Store and announce policies; returns the deletions (announced after the rest)."""
        store = self.store
        NP = Kind.NETWORK_POLICY
        np_store = store._objects[NP]
        policies = self._policies
        deletes: list[Change] = []
        for uid in uids:
            state = policies.get(uid)
            if state is None:
                gone = deleted.get(uid)
                if gone is not None and gone.published is not None:
                    store._delete(NP, uid)
                    deletes.append(
                        Change(NP, uid, gone.published, None, gone.published_span, EMPTY_SPAN, None)
                    )
                continue
            obj = state.policy
            old_obj = state.published
            if old_obj is None:
                state.published = obj
                state.published_span = state.span
                np_store[uid] = state
                added.append(uid)
                continue
            old_span = state.published_span
            if old_obj == obj:
                obj = old_obj
                if old_span == state.span:
                    continue
            store._put(NP, uid, state)
            state.published = obj
            state.published_span = state.span
            changes.append(Change(NP, uid, old_obj, obj, old_span, state.span, None))
        return deletes
