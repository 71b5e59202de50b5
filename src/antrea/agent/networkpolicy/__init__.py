"""NetworkPolicy realization in the agent: the controller stream in, conjunctive flows out.

Entry point for the agent: `start(agent)` (called by `antrea.agent.agent.Agent` once the
pipeline is installed, before its local API starts). It wires:

    ControlPlaneClient.events() -> NetworkPolicyController (cache.py, controller.py)
        -> PolicyReconciler (conjunctions.py, reconciler.py, flows.py) -> agent.flow_client
    status  -> ControlPlaneClient.report_status (per policy, realized generation)
    metrics -> agent.registry (metrics.py); routes -> agent.app (api.py); stats (stats.py)

See docs/design/networkpolicy-agent.md.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Hashable
from pathlib import Path
from typing import Any

import structlog

from antrea.agent.auditlog import AuditListener, AuditLogger, PacketInfo, RuleInfo
from antrea.agent.host import PolicyHost
from antrea.agent.networkpolicy import flows as fb
from antrea.agent.networkpolicy.api import add_routes, build_trace_flow
from antrea.agent.networkpolicy.controller import STREAM_RESTART, NetworkPolicyController
from antrea.agent.networkpolicy.ids import installed_conj_ids
from antrea.agent.networkpolicy.metrics import PolicyMetrics
from antrea.agent.networkpolicy.persist import StateWriter, load_events
from antrea.agent.networkpolicy.reconciler import PolicyReconciler
from antrea.agent.networkpolicy.reject import RejectResponder
from antrea.agent.networkpolicy.stats import RuleTotals, StatsCollector, conj_counters
from antrea.agent.openflow import pipeline
from antrea.agent.owners import is_policy_owner
from antrea.apis.controlplane.codec import EventType, WatchEvent
from antrea.apis.controlplane.types import Direction, NetworkPolicyNodeStatus, PodReference
from antrea.ovs.datapath import settle as settle_datapath
from antrea.ovs.openflow.cookie import OBJECT_MASK, Category, category_filter, cookie_category
from antrea.ovs.openflow.flow import Output
from antrea.ovs.ovsctl import DumpedFlow
from antrea.util.atomicfile import write_atomic

log = structlog.get_logger(__name__)

FALLBACK_AFTER_S = 5.0
STATS_REPORT_INTERVAL_S = 10.0  # upstream reports every 60 s

__all__ = ["NetworkPolicyController", "PolicyAgent", "PolicyReconciler", "start"]


class PolicyAgent:
    """The policy realization attached to one running agent (its view: `PolicyHost`)."""

    def __init__(self, agent: PolicyHost) -> None:
        self.agent = agent
        self.ofports: dict[PodReference, int] = {}
        self._iface_macs: dict[PodReference, tuple[int, str, str]] = {}
        for c in agent.interface_store.list():
            self._index(c)
        agent.interface_store.add_listener(self._on_interface)
        from antrea.agent.openflow.pipeline import PACKET_IN_LOG

        node = getattr(agent, "node", None)
        gw_ip = str(node.gateway_ip) if node is not None and node.gateway_ip else None
        self.metrics = PolicyMetrics(agent.registry, self._live)
        # Reject rules: packets go to the controller; the agent answers (reject.py).
        target = str(getattr(getattr(agent, "ofctl", None), "target", "") or "")
        self.reject: RejectResponder | None = None
        if target.startswith("unix:"):
            self.reject = RejectResponder(
                target,
                is_pod_port=lambda p: p in self._pod_ports(),
                gateway_mac=lambda: getattr(agent, "gateway_mac", None) or None,
            )
        # Audit logging of logged isolation drops (agent/auditlog.py, np.log).
        self.audit: AuditListener | None = None
        audit_path = str(getattr(getattr(agent, "cfg", None), "networkPolicyAuditLog", "") or "")
        if target.startswith("unix:") and audit_path:
            self.audit = AuditListener(
                target,
                AuditLogger(Path(audit_path)),
                accept=lambda c, table, reason: (
                    cookie_category(c) is Category.NETWORK_POLICY
                    and (
                        c & OBJECT_MASK == fb.AUDIT_OBJECT_ID
                        or table in (pipeline.INGRESS_RULE, pipeline.EGRESS_RULE)
                        or bool(reason & PACKET_IN_LOG)
                    )
                ),
                resolve=self._audit_rule,
            )
        self.reconciler = PolicyReconciler(
            agent.flow_client,
            round_num=agent.round_num,
            ofport_of=self.ofports.get,
            gateway_ip=gw_ip,
            gateway_mark=pipeline.FROM_GATEWAY.match(),
            on_bundle=self.metrics.observe_bundle,
            settle=self._revalidate,
            reject=(lambda _d: (Output("CONTROLLER"),)) if self.reject is not None else None,
        )
        self.client: Any = None
        self.controller = NetworkPolicyController(
            node_name=agent.node_name,
            reconciler=self.reconciler,
            report_status=self._report,
            on_batch=self.metrics.observe_batch,
        )
        self.stats: StatsCollector | None = StatsCollector(
            self.dump_policy_flows, self.reconciler.rule_of_conj
        )
        # per-rule totals reported to the controller every stats_interval (stats.antrea.io)
        self.totals = RuleTotals()
        self.stats_interval = STATS_REPORT_INTERVAL_S
        self.stats_reports = 0
        cfg = getattr(agent, "cfg", None)
        self.state_file: Path | None = (
            Path(cfg.stateDir) / "networkpolicy" / "state.msgpack" if cfg is not None else None
        )
        self.writer = (
            StateWriter(self.state_file, self.controller.cache, idle=self.controller.wait_idle)
            if self.state_file
            else None
        )
        self.stats_file: Path | None = (
            Path(cfg.stateDir) / "networkpolicy" / "stats.json" if cfg is not None else None
        )
        self.real_events = 0
        self.used_fallback = False
        self.ids_reserved = asyncio.Event()

    def _pod_ports(self) -> set[int]:
        return set(self.ofports.values())

    # -- interface store ------------------------------------------------------------------
    def _audit_rule(self, table: int, cookie: int, pkt: PacketInfo) -> RuleInfo | None:
        """The logged rule behind a packet-in: a Kubernetes rule that allowed a new connection
        (rule tables: the conjunction in the cookie), or the logged Kubernetes policy whose
        isolation dropped it (default tables). The pod is the destination (ingress) or the
        source (egress)."""
        names: dict[int, tuple[Direction, str]] = {
            pipeline.INGRESS.default_table: (Direction.IN, "IngressDefaultRule"),
            pipeline.EGRESS.default_table: (Direction.OUT, "EgressDefaultRule"),
            pipeline.INGRESS_RULE: (Direction.IN, "IngressRule"),
            pipeline.EGRESS_RULE: (Direction.OUT, "EgressRule"),
        }
        native = self._audit_native_rule(table, cookie, pkt)
        if native is not None:
            return native
        if table not in names:
            return None
        direction, name = names[table]
        ip = pkt.dst_ip if direction is Direction.IN else pkt.src_ip
        cache = self.controller.cache
        pod: PodReference | None = None
        for members in cache.applied_to_groups.values():
            pod = next((m.pod for m in members if ip in m.ips), None)
            if pod is not None:
                break
        if pod is None:
            return None
        if table in (pipeline.INGRESS_RULE, pipeline.EGRESS_RULE):
            rid = self.reconciler.conj_rule.get(cookie & OBJECT_MASK)
            rule = cache.rules.get(rid) if rid is not None else None
            if rule is None or not rule.rule.enable_logging:
                return None
            candidates = [rule]
            disposition = "Allow"
        else:
            candidates = [
                r
                for r in cache.rules.values()
                if r.rule.enable_logging
                and r.rule.direction is direction
                and any(
                    m.pod == pod
                    for g in r.applied_to_groups
                    for m in cache.applied_to_groups.get(g, ())
                )
            ]
            disposition = "Drop"
        refs = []
        for r in candidates:
            policy = cache.policies.get(r.policy)
            if policy is not None:
                ref = policy.source_ref
                refs.append(f"{ref.type}:{ref.namespace + '/' if ref.namespace else ''}{ref.name}")
        if not refs:
            return None
        return RuleInfo(
            table=name,
            policy=sorted(refs)[0],
            disposition=disposition,
            applied_to=f"{pod.namespace}/{pod.name}",
        )

    def _applied_pod(self, direction: Direction, pkt: PacketInfo) -> PodReference | None:
        """The local pod a rule of that direction applied to: destination (ingress), source."""
        ip = pkt.dst_ip if direction is Direction.IN else pkt.src_ip
        for members in self.controller.cache.applied_to_groups.values():
            pod = next((m.pod for m in members if ip in m.ips), None)
            if pod is not None:
                return pod
        return None

    def _audit_native_rule(self, table: int, cookie: int, pkt: PacketInfo) -> RuleInfo | None:
        """An Antrea-native rule with ``enableLogging`` whose action flow (its conjunction in
        the cookie) sent the packet: policy, rule name, action, OpenFlow priority, logLabel."""
        names: dict[int, str] = {
            pipeline.ANTREA_INGRESS_RULE: "AntreaPolicyIngressRule",
            pipeline.ANTREA_EGRESS_RULE: "AntreaPolicyEgressRule",
            pipeline.INGRESS.default_table: "IngressDefaultRule",  # baseline tier
            pipeline.EGRESS.default_table: "EgressDefaultRule",
        }
        if table not in names or cookie & OBJECT_MASK == fb.AUDIT_OBJECT_ID:
            return None
        cache = self.controller.cache
        rid = self.reconciler.conj_rule.get(cookie & OBJECT_MASK)
        rule = cache.rules.get(rid) if rid is not None else None
        if rule is None or rule.rule.action is None or not rule.rule.enable_logging:
            return None
        policy = cache.policies.get(rule.policy)
        pod = self._applied_pod(rule.direction, pkt)
        if policy is None or pod is None:
            return None
        ref = policy.source_ref
        return RuleInfo(
            table=names[table],
            policy=f"{ref.type}:{ref.namespace + '/' if ref.namespace else ''}{ref.name}",
            disposition=str(rule.rule.action),
            rule_name=rule.rule.name,
            priority=self.reconciler.native.priority_of(rule.id),
            applied_to=f"{pod.namespace}/{pod.name}",
            label=rule.rule.log_label,
        )

    def _index(self, c: Any) -> None:
        ref = PodReference(c.pod_namespace, c.pod_name)
        self.ofports[ref] = c.ofport
        self._iface_macs[ref] = (c.ofport, c.mac, str(c.ip))

    def _on_interface(self, event: Any, c: Any) -> None:
        ref = PodReference(c.pod_namespace, c.pod_name)
        if getattr(event, "value", str(event)) == "deleted":
            if self.ofports.get(ref) == c.ofport:
                self.ofports.pop(ref, None)
                self._iface_macs.pop(ref, None)
        else:
            self._index(c)
        self.controller.pod_changed(ref)

    # -- status, metrics, OVS helpers -----------------------------------------------------
    def _conj_owner(self, conj_id: int) -> tuple[str, str, str] | None:
        rid = self.reconciler.rule_of_conj(conj_id)
        rule = self.controller.cache.rules.get(rid) if rid is not None else None
        return (rid, rule.policy, rule.rule.name) if rid is not None and rule else None

    async def collect_stats(self) -> bool:
        """Read the counters once, fold them into the totals and send those to the controller
        (True when it accepted them)."""
        # its own dump: the local API's cached one may be older than the last reading
        self.totals.observe(conj_counters(await self.dump_policy_flows()), self._conj_owner)
        if self.controller.ready.is_set():  # the policies are known (else: restored totals kept)
            self.totals.retain(self.controller.cache.policies)
        if self.stats_file is not None:
            data = json.dumps(self.totals.saved())
            try:
                self.stats_file.parent.mkdir(parents=True, exist_ok=True)
                await asyncio.to_thread(write_atomic, self.stats_file, data)
            except OSError as exc:
                log.warning("policy_stats_save_failed", path=str(self.stats_file), error=str(exc))
        report = getattr(self.client, "report_stats", None)
        if report is None:
            return False
        ok = bool(await report(self.totals.summary(self.agent.node_name)))
        self.stats_reports += ok
        return ok

    async def report_stats(self) -> None:
        """The first reading (a baseline: see stats.RuleTotals) once the flows left by a previous
        run are known, then one report every ``stats_interval``."""
        path = self.stats_file
        if path is not None:
            try:
                saved = json.loads(await asyncio.to_thread(path.read_text))
            except FileNotFoundError:
                pass
            except (OSError, ValueError) as exc:
                log.warning("policy_stats_restore_failed", path=str(path), error=str(exc))
            else:
                log.info("policy_stats_restored", rules=self.totals.restore(saved))
        await self.ids_reserved.wait()
        while True:
            try:
                await self.collect_stats()
            except Exception as exc:  # a failed dump: the next round reads again
                log.info("policy_stats_collection_failed", error=str(exc))
            await asyncio.sleep(self.stats_interval)

    async def _report(self, status: NetworkPolicyNodeStatus) -> None:
        if self.client is not None:
            await self.client.report_status(status)

    def _live(self) -> dict[str, Any]:
        ctl = self.controller
        return {
            "rules": self.reconciler.counts(),
            "policies": len(ctl.cache.policies),
            "rule_errors": len(ctl.rule_errors),
            "flows": sum(len(self.agent.flow_client.flows_of(o)) for o in self._owners()),
            "initial_sync_seconds": ctl.initial_sync_seconds,
        }

    def _owners(self) -> list[Hashable]:
        return [o for o in self.agent.flow_client.owners() if is_policy_owner(o)]

    async def _revalidate(self) -> None:
        """Wait until the datapath's cached flows reflect the new tables (ovs/datapath.py)."""
        await settle_datapath(self.agent.ofctl)

    async def dump_policy_flows(self) -> list[DumpedFlow]:
        flows: list[DumpedFlow] = await self.agent.ofctl.dump_flows(
            category_filter(Category.NETWORK_POLICY)
        )
        return flows

    def trace_flow(self, source: str, destination: str, extra: str) -> str:
        ns, _, name = source.rpartition("/")
        src = self._iface_macs.get(PodReference(ns or "default", name))
        if src is None:
            raise LookupError(f"source pod {source} has no interface on this node")
        gw_mac = getattr(self.agent, "gateway_mac", "") or "00:00:00:00:00:00"
        if "/" in destination or not _is_ip(destination):
            dns, _, dname = destination.rpartition("/")
            ref = PodReference(dns or "default", dname)
            local = self._iface_macs.get(ref)
            if local is not None:
                dst_ip, dst_mac = local[2], local[1]
            else:
                ip = self._known_ip(ref)
                if ip is None:
                    raise LookupError(
                        f"destination pod {destination} is not on this node and not in any "
                        "group this node knows; pass its IP"
                    )
                dst_ip, dst_mac = ip, gw_mac
        else:
            dst_ip = destination
            local_dst = next((v for v in self._iface_macs.values() if v[2] == destination), None)
            dst_mac = local_dst[1] if local_dst is not None else gw_mac
        return build_trace_flow(
            src_ofport=src[0],
            src_mac=src[1],
            src_ip=src[2],
            dst_ip=dst_ip,
            dst_mac=dst_mac,
            extra=extra,
        )

    def _known_ip(self, ref: PodReference) -> str | None:
        cache = self.controller.cache
        for groups in (cache.address_groups, cache.applied_to_groups):
            for members in groups.values():
                for m in members:
                    if m.pod == ref and m.ips:
                        return m.ips[0]
        return None

    async def trace(self, flow: str) -> str:
        out: str = await self.agent.ofctl.trace(flow)
        return out

    # -- the stream -----------------------------------------------------------------------
    async def reserve_installed_ids(self) -> set[int]:
        """Reserve the conjunction IDs the switch still holds (a previous round's) so this
        round never shares one with them; nothing is realized before this is done (retried
        until the switch answers: meanwhile the previous round's flows keep enforcing)."""
        if self.ids_reserved.is_set():
            return set()
        delay = 0.2
        flows: list[DumpedFlow] = []
        while True:
            try:
                flows = await self.dump_policy_flows()
                break
            except Exception as exc:
                log.warning("policy_installed_ids_read_failed", error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        ids = installed_conj_ids(flows)
        self.reconciler.ids.reserve(ids)
        self.ids_reserved.set()
        log.info("policy_previous_conj_ids_reserved", count=len(ids), max=max(ids, default=0))
        return ids

    async def run(self, events: Callable[[], AsyncIterator[WatchEvent]]) -> None:
        """Consume the stream (reconnections are the client's business) until cancelled."""
        await self.reserve_installed_ids()
        await self.controller.run(self._track(events()))

    async def _track(self, events: AsyncIterator[WatchEvent]) -> AsyncIterator[WatchEvent]:
        async for ev in events:
            self.real_events += 1
            if self.real_events == 1 and self.used_fallback and ev.message != STREAM_RESTART:
                # the persisted state was realized: the first real state is a resync of it
                yield WatchEvent(EventType.ERROR, message=STREAM_RESTART)
            if self.writer is not None and ev.type is not EventType.ERROR:
                self.writer.changed()
            if ev.type is EventType.BOOKMARK:
                self.agent.controller_connected = True
            elif ev.type is EventType.ERROR and ev.message == STREAM_RESTART:
                self.agent.controller_connected = False
            elif ev.type is EventType.DELETED and ev.object is not None and self.client:
                forget = getattr(self.client, "forget_status", None)
                if forget is not None and ev.kind is not None and str(ev.kind) == "NetworkPolicy":
                    forget(ev.object.name)
            yield ev

    async def fallback(self, after: float = FALLBACK_AFTER_S) -> None:
        """Realize the persisted state if the controller says nothing for `after` seconds."""
        await asyncio.sleep(after)
        await self.ids_reserved.wait()
        if self.real_events or self.state_file is None:
            return
        events = await asyncio.to_thread(load_events, self.state_file)
        if not events or self.real_events:
            return
        log.warning(
            "policy_fallback_to_persisted_state", path=str(self.state_file), objects=len(events) - 1
        )
        self.used_fallback = True
        for ev in events:
            self.controller.handle(ev)

    async def mark_ready(self) -> None:
        await self.controller.ready.wait()
        self.agent.policy_ready.set()


def _is_ip(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def start(agent: PolicyHost, *, client: Any = None) -> PolicyAgent:
    """Attach the policy realization to a starting agent."""
    pa = PolicyAgent(agent)
    if client is None:
        from antrea.agent.controlplane_client import ControlPlaneClient

        client = ControlPlaneClient(agent.node_name, agent.api_client)
    pa.client = client
    if hasattr(client, "on_disconnect"):
        # the stream is down (outage, failover): agentinfo says so now, not at the next connect
        client.on_disconnect = lambda: setattr(agent, "controller_connected", False)
    add_routes(agent.app, pa)
    agent.add_task(pa.run(client.events), "networkpolicy_stream")
    agent.add_task(pa.mark_ready(), "networkpolicy_ready")
    agent.add_task(pa.fallback(), "networkpolicy_fallback")
    agent.add_task(pa.report_stats(), "networkpolicy_stats")
    if pa.writer is not None:
        agent.add_task(pa.writer.run(), "networkpolicy_persist")
    if pa.reject is not None:
        agent.add_task(pa.reject.run(), "networkpolicy_reject")
    if pa.audit is not None:
        agent.add_task(pa.audit.run(), "networkpolicy_audit")
    log.info("network_policy_realization_attached", node=agent.node_name)
    return pa
