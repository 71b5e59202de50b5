"""Desired flows per owner, turned into one bundle of deltas.

An *owner* is whatever produces flows (a pod, a remote node, a policy rule). Callers state the
complete set of flows an owner wants (`None` = owner gone); `FlowClient.sync` diffs that against
what is installed and sends ONE bundle: new keys are added, vanished keys deleted, keys whose
actions changed modified in place (counters kept), keys whose cookie changed re-added. The cache
is updated only after the switch accepted the bundle, so a rejected bundle leaves both the switch
and the cache as they were.

A large batch can hand the flows of its new owners over early (`FlowClient.stage`): they are
streamed into the bundle of the next `sync` of any of those owners
(`antrea.ovs.openflow.bundle.open_stream`; a sync of other owners meanwhile goes its own way)
while the caller still plans the rest, and that sync commits them with the rest of its plan if
the plan adds exactly them (else the streamed bundle is discarded and the plan sent the usual
way). Their keys are claimed when staged, so such a sync plans only the owners not staged
(`_plan_staged`). The owner index changes only when the sync's bundle is committed, as without
staging.

`CoalescingWriter` sits on top (`antrea.util.batcher`): changes submitted while a bundle is in
flight are merged into the next one. If a merged bundle is rejected, it is retried owner by owner
so that only the offending owner fails (Felix's split-and-retry), and everybody else's change
still lands.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import attrgetter

import structlog

from antrea.errors import AntreaError
from antrea.ovs.errors import BundleRejected
from antrea.ovs.openflow.bundle import BundleStream, FlowTransport, open_stream
from antrea.ovs.openflow.flow import Flow, FlowKey
from antrea.util.batcher import Batcher

log = structlog.get_logger(__name__)

Owner = Hashable
Desired = Mapping[Owner, Iterable[Flow] | None]

_KEY = attrgetter("key")
_SEQUENCES = (list, tuple)


class FlowOwnershipError(AntreaError, ValueError):
    """Two owners want a flow with the same key: a programming error in a flow builder."""


@dataclass
class Plan:
    add: list[Flow] = field(default_factory=list)
    modify: list[Flow] = field(default_factory=list)
    delete: list[Flow] = field(default_factory=list)
    # the owners that had flows installed: their flows after the bundle (None: gone)
    owners: dict[Owner, tuple[Flow, ...] | None] = field(default_factory=dict)
    # the owners that had none and get some, and their keys (claimed in bulk by `plan`)
    fresh_owners: dict[Owner, tuple[Flow, ...]] = field(default_factory=dict)
    fresh: dict[FlowKey, Owner] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.add) + len(self.modify) + len(self.delete)


class FlowClient:
    def __init__(self, transport: FlowTransport) -> None:
        self.transport = transport
        self._by_owner: dict[Owner, tuple[Flow, ...]] = {}  # one flow per key
        self._key_owner: dict[FlowKey, Owner] = {}
        self._lock = asyncio.Lock()
        # the streamed bundle of the next sync and the new owners' flows staged in it
        self._stream: BundleStream | None = None
        self._staged: dict[Owner, tuple[Flow, ...]] = {}
        self._staged_keys: dict[FlowKey, Owner] = {}

    # -- queries --------------------------------------------------------------------------
    def flows_of(self, owner: Owner) -> list[Flow]:
        return list(self._by_owner.get(owner, ()))

    def owners(self) -> list[Owner]:
        return list(self._by_owner)

    def installed(self) -> list[Flow]:
        return [f for flows in self._by_owner.values() for f in flows]

    def __len__(self) -> int:
        return len(self._key_owner)

    # -- planning -------------------------------------------------------------------------
    def plan(self, desired: Desired) -> Plan:
        """The bundle that makes `desired` true, and the owner index after it (`_commit`).

        Owners with nothing installed (the bulk of a large batch) take a fast path: all their
        flows are adds, handed over as whole lists, and their keys are claimed in bulk (one
        C-level pass: no Python work per flow), then checked at once against each other, the
        re-planned owners' keys and the installed keys. Any overlap (a hand-over from an owner
        of this plan, a key twice in one owner's list, or a conflict) is settled by
        `_plan_each`, the flow-by-flow path, which raises `FlowOwnershipError` for a conflict."""
        plan = Plan()
        add, modify, delete, owners = plan.add, plan.modify, plan.delete, plan.owners
        fresh_owners = plan.fresh_owners
        by_owner = self._by_owner
        # the owners with something installed (when nothing is: not one lookup per owner)
        replanned = by_owner.keys() & desired.keys() if by_owner else ()
        claimed: dict[FlowKey, Owner] = {}
        for owner, flows in desired.items():
            if replanned and owner in replanned:
                old = {f.key: f for f in by_owner[owner]}
                new = {} if flows is None else {f.key: f for f in flows}
                for key, flow in new.items():
                    self._take(key, owner, desired, claimed)
                    prev = old.get(key)
                    if prev is None or prev.cookie != flow.cookie:
                        add.append(flow)
                    elif prev.actions != flow.actions:
                        modify.append(flow)
                delete.extend(f for k, f in old.items() if k not in new)
                owners[owner] = None if flows is None else tuple(new.values())
            elif flows:  # a new owner: all its flows are adds
                mine = tuple(flows)
                if mine:
                    fresh_owners[owner] = mine
        if fresh_owners:
            n = len(add)
            add.extend(chain.from_iterable(fresh_owners.values()))
            keys = map(_KEY, add[n:])
            sizes = map(len, fresh_owners.values())
            holders = chain.from_iterable(map(repeat, fresh_owners, sizes))
            fresh = plan.fresh = dict(zip(keys, holders, strict=True))
            held = self._key_owner
            if (
                len(fresh) != len(add) - n  # a key twice
                or (claimed and not fresh.keys().isdisjoint(claimed.keys()))
                or (held and not fresh.keys().isdisjoint(held.keys()))
            ):
                # (with the lists read so far: an owner's flows may be a one-shot iterator)
                return self._plan_each({**desired, **owners, **fresh_owners})
        if delete:
            # a key moving between two re-planned owners is neither added nor deleted twice
            # (one moving to a new owner was held: `_plan_each` did it)
            plan.delete = [f for f in delete if f.key not in claimed]
        return plan

    def _plan_staged(
        self,
        desired: Desired,
        staged: dict[Owner, tuple[Flow, ...]],
        staged_keys: dict[FlowKey, Owner],
    ) -> tuple[Plan, list[Flow]] | None:
        """`plan` for a sync whose staged owners are all desired with exactly their staged
        flows (the common case: a large batch streamed as it was planned), and the adds not
        streamed yet. The staged owners' keys were claimed when they were staged, so only the
        rest of `desired` is planned and checked against them; None when anything else holds
        (a staged owner changed or gone, a key of the rest or an installed one among the
        staged keys, a conflict): the caller then plans everything the usual way."""
        # a copy keeps the owners' hashes (a policy owner's may be a Python-level hash of an
        # address): only the staged owners are looked up
        rest = dict(desired)
        pop = rest.pop
        for owner, flows in staged.items():
            want = pop(owner, None)
            # (lists and tuples only: an iterator would be consumed by the look)
            if type(want) not in _SEQUENCES or tuple(want) != flows:  # type: ignore[arg-type]
                return None
        held = self._key_owner
        if held and not staged_keys.keys().isdisjoint(held.keys()):
            return None  # installed since it was staged (a sync of other owners meanwhile)
        try:
            plan = self.plan(rest)
        except FlowOwnershipError:
            return None  # the usual way says which
        # the keys of both, merged with their stored hashes: disjoint if none was merged away
        fresh = dict(staged_keys)
        fresh.update(plan.fresh)
        if len(fresh) != len(staged_keys) + len(plan.fresh):
            return None
        for kept in plan.owners.values():
            if kept and any(f.key in staged_keys for f in kept):
                return None
        added = plan.add
        plan.add = [*chain.from_iterable(staged.values()), *added]
        plan.fresh_owners = {**staged, **plan.fresh_owners}
        plan.fresh = fresh
        return plan, added

    def _take(
        self, key: FlowKey, owner: Owner, desired: Desired, claimed: dict[FlowKey, Owner]
    ) -> None:
        """Claim `key` for `owner` in a plan: refused when another owner holds it (installed,
        and not itself replanned here) or claimed it earlier in this plan."""
        holder = self._key_owner.get(key)
        if holder is not None and holder is not owner and holder != owner and holder not in desired:
            raise FlowOwnershipError(f"flow {key} wanted by {owner!r} and {holder!r}")
        first = claimed.setdefault(key, owner)
        if first is not owner and first != owner:
            raise FlowOwnershipError(f"flow {key} wanted by {owner!r} and {first!r}")

    def _plan_each(self, desired: Desired) -> Plan:
        """`plan` owner by owner and flow by flow, every key claimed on its own: the reference
        the fast path must agree with, and the path of hand-overs and conflicts."""
        plan = Plan()
        add, modify, delete = plan.add, plan.modify, plan.delete
        installed = self._by_owner.get
        claimed: dict[FlowKey, Owner] = {}
        for owner, flows in desired.items():
            had = installed(owner)
            old = {f.key: f for f in had} if had else {}
            new: dict[FlowKey, Flow] = {} if flows is None else {f.key: f for f in flows}
            for key, flow in new.items():
                self._take(key, owner, desired, claimed)
                prev = old.get(key)
                if prev is None or prev.cookie != flow.cookie:
                    add.append(flow)
                elif prev.actions != flow.actions:
                    modify.append(flow)
            if had:
                delete.extend(f for k, f in old.items() if k not in new)
                plan.owners[owner] = None if flows is None else tuple(new.values())
            elif new:
                plan.fresh_owners[owner] = tuple(new.values())
                plan.fresh.update(dict.fromkeys(new, owner))
        if delete:
            plan.delete = [f for f in delete if f.key not in claimed]
        return plan

    def _commit(self, plan: Plan) -> None:
        by_owner = self._by_owner
        key_owner = self._key_owner
        for owner, flows in plan.owners.items():
            # (a key another owner of this plan took over is theirs already: kept)
            for f in by_owner[owner]:
                if key_owner.get(f.key) == owner:
                    del key_owner[f.key]
            if flows:
                by_owner[owner] = flows
                key_owner.update(dict.fromkeys(map(_KEY, flows), owner))
            else:
                del by_owner[owner]
        # the new owners, indexed in bulk
        by_owner.update(plan.fresh_owners)
        key_owner.update(plan.fresh)

    # -- changes --------------------------------------------------------------------------
    async def stage(self, owners: Mapping[Owner, Sequence[Flow] | None]) -> None:
        """Stream the flows of `owners` that have nothing installed (nor staged) into the next
        `sync`'s bundle now (see the module doc). Owners whose keys overlap each other's, a
        staged or an installed key are left to the sync."""
        by_owner, staged = self._by_owner, self._staged
        new = {
            o: tuple(f) for o, f in owners.items() if f and o not in by_owner and o not in staged
        }
        if not new:
            return
        flows = list(chain.from_iterable(new.values()))
        keys = _key_map(new, flows)
        held = self._key_owner
        if len(keys) != len(flows) or (held and not keys.keys().isdisjoint(held.keys())):
            return
        # merged with their stored hashes: disjoint from the staged keys if none merged away
        staged_keys = self._staged_keys
        n = len(staged_keys)
        staged_keys.update(keys)
        if len(staged_keys) != n + len(keys):
            self._staged_keys = _key_map(staged, chain.from_iterable(staged.values()))
            return
        if self._stream is None:
            self._stream = open_stream(self.transport)
        staged.update(new)
        await self._stream.add(flows)

    async def discard_staged(self) -> None:
        """Drop the streamed bundle and what was staged in it (the caller gave up its batch)."""
        stream = self._stream
        self._stream, self._staged, self._staged_keys = None, {}, {}
        if stream is not None:
            await stream.discard()

    async def sync(self, desired: Desired) -> Plan:
        """Make the given owners' flows exactly `desired` in one bundle."""
        async with self._lock:
            stream, staged, sent = self._stream, self._staged, self._staged_keys
            if stream is not None and staged.keys().isdisjoint(desired.keys()):
                stream = None  # not this sync's (e.g. pod flows during a policy batch): kept
            else:
                self._stream, self._staged, self._staged_keys = None, {}, {}
            try:
                fast = self._plan_staged(desired, staged, sent) if stream is not None else None
                if fast is not None:
                    assert stream is not None
                    plan, rest = fast
                    await stream.commit(add=rest, modify=plan.modify, delete=plan.delete)
                    self._commit(plan)
                    return plan
                plan = self.plan(desired)
            except BaseException:
                if stream is not None:
                    await stream.discard()
                raise
            if stream is not None:
                fresh = plan.fresh_owners
                if all(fresh.get(o) == flows for o, flows in staged.items()):
                    # every staged flow is an add of this plan (and no other add has its key:
                    # that would have been a conflict): the stream has them already
                    rest = [f for f in plan.add if f.key not in sent]
                    await stream.commit(add=rest, modify=plan.modify, delete=plan.delete)
                    self._commit(plan)
                    return plan
                await stream.discard()
            if len(plan):
                await self.transport.bundle(add=plan.add, modify=plan.modify, delete=plan.delete)
            self._commit(plan)
            return plan

    async def replay(self) -> int:
        """Re-install every known flow in one bundle (after ovs-vswitchd lost its tables)."""
        async with self._lock:
            flows = self.installed()
            await self.transport.bundle(add=flows)
            return len(flows)


class CoalescingWriter:
    """Merge changes that arrive while a bundle is in flight into the next bundle.

    One `antrea.util.batcher.Batcher` keyed by owner: a newer change of an owner replaces its
    pending one; a rejected merged bundle is split owner by owner.
    """

    def __init__(self, client: FlowClient) -> None:
        self.client = client
        self._batcher: Batcher[tuple[Owner, list[Flow] | None]] = Batcher(
            self._sync, split=_owner_fault
        )

    @property
    def bundles(self) -> int:
        """Bundles the switch accepted."""
        return self._batcher.applied

    async def submit(self, owner: Owner, flows: Iterable[Flow] | None) -> None:
        """Set `owner`'s flows; returns when they are in the switch (raises if rejected)."""
        await self._batcher.submit((owner, list(flows) if flows is not None else None), key=owner)

    async def _sync(self, batch: list[tuple[Owner, list[Flow] | None]]) -> None:
        try:
            await self.client.sync(dict(batch))
        except (BundleRejected, FlowOwnershipError) as exc:
            if len(batch) > 1:
                log.info("bundle_split_for_retry", owners=len(batch))
            else:
                log.warning("owner_flows_rejected", owner=str(batch[0][0]), error=str(exc))
            raise


def _key_map(owners: Mapping[Owner, Sequence[Flow]], flows: Iterable[Flow]) -> dict[FlowKey, Owner]:
    """Key -> owner of `flows`, the flows of `owners` in order (a key twice: kept once)."""
    holders = chain.from_iterable(map(repeat, owners, map(len, owners.values())))
    return dict(zip(map(_KEY, flows), holders, strict=True))


def _owner_fault(exc: BaseException) -> bool:
    """A rejection one owner's flows may cause: worth retrying owner by owner."""
    return isinstance(exc, (BundleRejected, FlowOwnershipError))
