"""AntreaProxy: Services and EndpointSlices -> select groups and service flows.

Level-triggered: watch events mark a Service dirty; one task realizes all dirty Services
together (`_realize`: at most five bundles, whatever their number). For each port the proxier
compares the wanted (endpoints, flags) with what it installed:

* endpoints changed, still some: the group is modified (add-or-modify) -- the Service's flows
  are not touched; endpoint DNAT flows of new endpoints are added in the bundle before and flows
  of endpoints no Service uses any more deleted in the bundle after;
* first endpoints / last endpoint gone / port added, removed or changed: the Service's flows
  are stated anew (the group is set before them and deleted after them). A port without
  endpoints has no flows: its traffic goes on to the host through gw0, whose REJECT rule
  (`reject`) refuses it at once.

Groups are set with add-or-modify, so a restarted agent takes over the groups of its
predecessor; after ovs-vswitchd lost its tables, `replay_groups` sets them all again before the
agent replays the flows that point at them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

import structlog
from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as PromCounter

from antrea.agent.owners import ProxyOwner
from antrea.agent.proxy import flows as pf
from antrea.agent.proxy.conntrack import Stale
from antrea.agent.proxy.types import (
    JSON,
    SERVICE_NAME_LABEL,
    Endpoint,
    ServicePort,
    endpoints_of,
    service_ports,
)
from antrea.ovs.openflow.bundle import FlowTransport
from antrea.ovs.openflow.client import CoalescingWriter
from antrea.ovs.openflow.cookie import Category
from antrea.ovs.openflow.flow import Flow, Proto
from antrea.ovs.openflow.groups import Group, GroupType

log = structlog.get_logger(__name__)

SvcKey = tuple[str, str]  # namespace, name
PortKey = tuple[str, str, str, str]  # namespace, name, port name, protocol
EpKey = tuple[str, int, str]  # ip, port, protocol


def service_owner(sp: ServicePort) -> Hashable:
    return (ProxyOwner.SERVICE, *sp.key)


def endpoint_owner(key: EpKey) -> Hashable:
    return (ProxyOwner.ENDPOINT, *key)


SHARED_OWNER = (ProxyOwner.SHARED,)


@dataclass
class Installed:
    port: ServicePort
    group_id: int
    endpoints: frozenset[Endpoint]
    has_flows: bool
    local_endpoints: frozenset[Endpoint] = frozenset()  # NodePort, externalTrafficPolicy Local

    @property
    def local_group_id(self) -> int | None:
        return local_group(self.group_id) if self.local_endpoints else None


def local_group(group_id: int) -> int:
    """The group of a NodePort's local endpoints (externalTrafficPolicy: Local)."""
    return group_id | LOCAL_GROUP_BIT


LOCAL_GROUP_BIT = 1 << 30


class ProxyMetrics:
    """Upstream's names: antrea_proxy_sync_proxy_rules_*, antrea_proxy_total_*_*."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.sync_duration = Histogram(
            "antrea_proxy_sync_proxy_rules_duration_seconds",
            "SyncProxyRules duration of AntreaProxy in seconds",
            registry=registry,
        )
        self.services_installed = Gauge(
            "antrea_proxy_total_services_installed",
            "The number of Services installed by AntreaProxy",
            registry=registry,
        )
        self.endpoints_installed = Gauge(
            "antrea_proxy_total_endpoints_installed",
            "The number of Endpoints installed by AntreaProxy",
            registry=registry,
        )
        self.services_updates = PromCounter(
            "antrea_proxy_total_services_updates",
            "The cumulative number of Service updates received",
            registry=registry,
        )
        self.endpoints_updates = PromCounter(
            "antrea_proxy_total_endpoints_updates",
            "The cumulative number of Endpoint updates received",
            registry=registry,
        )


class Proxier:
    def __init__(
        self,
        *,
        writer: CoalescingWriter,
        transport: FlowTransport,
        cookie: Callable[[Category, int], int],
        node_name: str,
        node_ips: tuple[ipaddress.IPv4Address, ...] = (),
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.writer = writer
        self.transport = transport
        self.cookie = cookie
        self.node_name = node_name
        self.node_ips = node_ips
        self.metrics = ProxyMetrics(registry)
        self.services: dict[SvcKey, list[ServicePort]] = {}
        self.slices: dict[SvcKey, dict[str, JSON]] = {}
        self.installed: dict[tuple[str, str, str, str], Installed] = {}
        self.ep_refs: Counter[EpKey] = Counter()
        self._group_ids: dict[tuple[str, str, str, str], int] = {}
        self._free_ids: list[int] = []
        self._next_id = 1
        self._dirty: set[SvcKey] = set()
        self._ports_of: dict[SvcKey, set[PortKey]] = {}  # installed ports per Service
        self._n_services = 0  # installed ports with flows (the metric)
        self._n_endpoints = 0
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self.synced = asyncio.Event()  # the initial lists were realized
        self.last_sync: dict[SvcKey, float] = {}  # monotonic time a Service was last realized
        # host side (service route, REJECT rule): again after ovs-vswitchd re-created gw0
        self.host_setup: Callable[[], None] | None = None
        # host NodePort DNAT rules, rewritten when the set of realized NodePorts changes
        self.nodeport_sync: Callable[[set[tuple[str, int, bool]]], object] | None = None
        self._nodeports: set[tuple[str, int, bool]] = set()
        # ends connections to endpoints a Service lost (`conntrack.flush_stale`)
        self.flush_conntrack: Callable[[set[Stale]], Awaitable[object]] | None = None

    # -- events ---------------------------------------------------------------------------
    def _mark(self, key: SvcKey) -> None:
        self._dirty.add(key)
        self._wake.set()

    def on_service(self, kind: str, obj: JSON) -> None:
        md = obj.get("metadata") or {}
        key = (str(md.get("namespace", "")), str(md.get("name", "")))
        if kind == "DELETED":
            self.services.pop(key, None)
        else:
            self.services[key] = service_ports(obj)
        self.metrics.services_updates.inc()
        self._mark(key)

    def on_slice(self, kind: str, obj: JSON) -> None:
        md = obj.get("metadata") or {}
        svc = (md.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if not svc:
            return
        key = (str(md.get("namespace", "")), str(svc))
        mine = self.slices.setdefault(key, {})
        if kind == "DELETED":
            mine.pop(str(md.get("name")), None)
            if not mine:
                self.slices.pop(key, None)
        else:
            mine[str(md.get("name"))] = obj
        self.metrics.endpoints_updates.inc()
        self._mark(key)

    # -- loop -----------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.sync_dirty()

    async def sync_dirty(self) -> None:
        """Realize every dirty Service in a few bundles (see `_realize`); retry on failure."""
        dirty, self._dirty = self._dirty, set()
        start = time.perf_counter()
        try:
            async with self._lock:
                await self._realize(dirty)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("service_sync_failed", services=len(dirty), error=repr(exc))
            await asyncio.sleep(0.5)
            for key in dirty:
                self._mark(key)
            return
        entries = self.nodeport_entries()
        if entries != self._nodeports and self.nodeport_sync is not None:
            await asyncio.to_thread(self.nodeport_sync, entries)
            self._nodeports = entries
        self.metrics.sync_duration.observe(time.perf_counter() - start)
        now = time.monotonic()
        for key in dirty:
            self.last_sync[key] = now
        self.metrics.services_installed.set(self._n_services)
        self.metrics.endpoints_installed.set(self._n_endpoints)

    # -- realization ----------------------------------------------------------------------
    def _group_id(self, key: tuple[str, str, str, str]) -> int:
        gid = self._group_ids.get(key)
        if gid is None:
            if self._free_ids:
                gid = self._free_ids.pop()
            else:
                gid = self._next_id
                self._next_id += 1
            self._group_ids[key] = gid
        return gid

    def _release_group(self, key: tuple[str, str, str, str]) -> None:
        gid = self._group_ids.pop(key, None)
        if gid is not None:
            self._free_ids.append(gid)

    def wanted_endpoints(self, sp: ServicePort, eps: frozenset[Endpoint]) -> frozenset[Endpoint]:
        if sp.internal_local:
            return frozenset(e for e in eps if e.node == self.node_name)
        return eps

    def _service_flows(self, inst: Installed) -> list[Flow]:
        cookie = self.cookie(Category.SERVICE, inst.group_id)
        fronts = pf.frontends(inst.port, inst.group_id, inst.local_group_id)
        return pf.service_flows(inst.port, fronts, cookie)

    def nodeport_entries(self) -> set[tuple[str, int, bool]]:
        """(protocol, nodePort, Local) of every NodePort with (local) endpoints."""
        out: set[tuple[str, int, bool]] = set()
        for i in self.installed.values():
            sp = i.port
            if sp.node_port and i.has_flows and (not sp.external_local or i.local_endpoints):
                out.add((sp.proto, sp.node_port, sp.external_local))
        return out

    async def sync_service(self, key: SvcKey) -> None:
        async with self._lock:
            await self._realize({key})

    def _ep_key(self, ep: Endpoint, sp: ServicePort) -> EpKey:
        return (str(ep.ip), ep.port, sp.proto)

    def _plan(self, keys: set[SvcKey]) -> tuple[list[Installed | None], dict[PortKey, Installed]]:
        """(the old state of every port that changes, its new state by port key)."""
        olds: list[Installed | None] = []
        news: dict[PortKey, Installed] = {}
        for key in keys:
            eps_by_port = endpoints_of(self.slices.get(key, {}).values())
            wanted: dict[PortKey, Installed] = {}
            for sp in self.services.get(key, []):
                eps = self.wanted_endpoints(
                    sp, eps_by_port.get((sp.port_name, sp.protocol), frozenset())
                )
                local: frozenset[Endpoint] = frozenset()
                if sp.node_port and sp.external_local and eps:
                    local = frozenset(e for e in eps if e.node == self.node_name)
                old = self.installed.get(sp.key)
                if (
                    old is not None
                    and old.port == sp
                    and old.endpoints == eps
                    and old.local_endpoints == local
                ):
                    continue
                gid = old.group_id if old is not None else self._group_id(sp.key)
                wanted[sp.key] = Installed(sp, gid, eps, bool(eps), local)
                olds.append(old)
            for pkey, inst in self.installed.items():
                if (
                    (pkey[0], pkey[1]) == key
                    and pkey not in wanted
                    and not any(sp.key == pkey for sp in self.services.get(key, []))
                ):
                    olds.append(inst)  # port gone: new state None
            news.update(wanted)
        return olds, news

    async def _realize(self, keys: set[SvcKey]) -> None:
        """Bring the dirty Services' ports to their wanted state in at most five bundles:

        1. DNAT flows of endpoints new to the node; 2. every group set (add-or-modify);
        3. the Service flows that change (a port's first endpoint, its last one, a changed
        spec); 4. groups of ports without endpoints (any more) deleted; 5. DNAT flows of
        endpoints no Service uses any more deleted. Steps 1/3/5 go through the CoalescingWriter
        (concurrent submits, one bundle each); the caches are updated only when all succeeded,
        and every step is idempotent, so a failure is retried from the same state.
        """
        olds, news = self._plan(keys)
        if not olds:
            return
        cookie0 = self.cookie(Category.SERVICE, 0)
        delta: Counter[EpKey] = Counter()
        proto_ep: dict[EpKey, tuple[Endpoint, Proto]] = {}
        for old in olds:
            if old is not None:
                for ep in old.endpoints:
                    delta[self._ep_key(ep, old.port)] -= 1
        for new in news.values():
            for ep in new.endpoints:
                k = self._ep_key(ep, new.port)
                delta[k] += 1
                proto_ep[k] = (ep, new.port.proto)
        ep_add = {
            k: [pf.endpoint_flow(proto_ep[k][0], proto_ep[k][1], cookie0)]
            for k, d in delta.items()
            if d > 0 and self.ep_refs.get(k, 0) == 0
        }
        ep_del = [k for k, d in delta.items() if d < 0 and self.ep_refs.get(k, 0) + d <= 0]
        await self._submit_all({endpoint_owner(k): f for k, f in ep_add.items()})

        groups: list[Group] = []
        for new in news.values():
            if new.endpoints:
                groups.append(pf.service_group(new.group_id, new.endpoints))
            if new.local_group_id is not None:
                groups.append(pf.service_group(new.local_group_id, new.local_endpoints))
        if groups:
            await self.transport.bundle(set_groups=groups)

        svc_flows: dict[Hashable, list[Flow] | None] = {}
        stale: list[Group] = []
        for old in olds:
            if old is None:
                continue
            nxt = news.get(old.port.key)
            if (nxt is None or not nxt.has_flows) and old.has_flows:
                svc_flows[service_owner(old.port)] = None
                stale.append(Group(old.group_id, GroupType.SELECT))
            if old.local_group_id is not None and (nxt is None or nxt.local_group_id is None):
                stale.append(Group(old.local_group_id, GroupType.SELECT))
        for new in news.values():
            cur = self.installed.get(new.port.key)
            same = (
                cur is not None
                and cur.port == new.port
                and cur.has_flows == new.has_flows
                and cur.local_group_id == new.local_group_id
            )
            if new.has_flows and not same:
                svc_flows[service_owner(new.port)] = self._service_flows(new)
        await self._submit_all(svc_flows)
        if stale:
            await self.transport.bundle(delete_groups=stale)
        await self._submit_all(dict.fromkeys((endpoint_owner(k) for k in ep_del), None))

        # all applied: the caches follow
        for k, d in delta.items():
            n = self.ep_refs.get(k, 0) + d
            if n > 0:
                self.ep_refs[k] = n
            else:
                self.ep_refs.pop(k, None)
        for old in olds:
            if old is not None:
                self._n_services -= old.has_flows
                self._n_endpoints -= len(old.endpoints)
                if old.port.key not in news:
                    pkey = old.port.key
                    del self.installed[pkey]
                    self._release_group(pkey)
                    self._ports_of[(pkey[0], pkey[1])].discard(pkey)
        for pkey, new in news.items():
            self._n_services += new.has_flows
            self._n_endpoints += len(new.endpoints)
            self._ports_of.setdefault((pkey[0], pkey[1]), set()).add(pkey)
        self.installed.update(news)
        if self.flush_conntrack is not None:
            gone: set[Stale] = set()
            for old in olds:
                if old is None:
                    continue
                nxt = news.get(old.port.key)
                sp = old.port
                for ep in old.endpoints - (nxt.endpoints if nxt is not None else frozenset()):
                    gone.add((sp.proto, str(sp.cluster_ip), sp.port, str(ep.ip), ep.port))
            if gone:
                try:
                    await self.flush_conntrack(gone)
                except Exception as exc:  # the datapath is right already; log only
                    log.warning("conntrack_flush_failed", error=repr(exc))

    async def _submit_all(self, owners: dict[Hashable, list[Flow] | None]) -> None:
        """State these owners' flows at once: ONE bundle (`FlowClient.sync`, which serializes
        with every other writer of the switch)."""
        if owners:
            await self.writer.client.sync(owners)

    # -- restart / replay -----------------------------------------------------------------
    def groups(self) -> list[Group]:
        out = [
            pf.service_group(i.group_id, i.endpoints)
            for i in self.installed.values()
            if i.has_flows
        ]
        out += [
            pf.service_group(i.local_group_id, i.local_endpoints)
            for i in self.installed.values()
            if i.local_group_id is not None
        ]
        return out

    async def replay_groups(self) -> int:
        """Set every group again (ovs-vswitchd lost them); before the flows are replayed."""
        if self.host_setup is not None:
            await asyncio.to_thread(self.host_setup)
        async with self._lock:
            groups = self.groups()
            await self.transport.bundle(set_groups=groups)
            return len(groups)

    def flows_of_service(self, namespace: str, name: str) -> list[Flow]:
        """The installed flows of a Service (for `antctl get ovsflows -S`)."""
        out: list[Flow] = []
        client = self.writer.client
        for inst in self.installed.values():
            if (inst.port.namespace, inst.port.name) != (namespace, name):
                continue
            out += client.flows_of(service_owner(inst.port))
            for ep in inst.endpoints:
                out += client.flows_of(endpoint_owner(self._ep_key(ep, inst.port)))
        return out

    def groups_of_service(self, namespace: str, name: str) -> list[Group]:
        return [
            pf.service_group(i.group_id, i.endpoints)
            for i in self.installed.values()
            if (i.port.namespace, i.port.name) == (namespace, name) and i.has_flows
        ]
