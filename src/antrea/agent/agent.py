"""The agent role: node network initialisation, CNI server, node routes, local API.

`run_agent(cfg)` builds an `Agent`, starts it and runs until cancelled. Start-up order (each
step described where it is implemented):

1. read this Node (spec.podCIDR, InternalIP) from the Kubernetes API, retrying until it has them;
2. converge br-int / gw0 / tun0 in one OVSDB transaction (`bridge.init_bridge`), configure gw0;
3. pick the new flow round: one more than any round found in the persisted ``roundNum`` or in
   the cookies of the flows the switch holds, so a crashed predecessor's live flows are never
   deleted up front (no gap);
4. rebuild the interface store from OVSDB external_ids, release leaked IPs;
5. install pipeline + gateway + tunnel + every known pod's flows in ONE bundle (adds overwrite
   the previous round's flows in place);
6. start the NetworkPolicy realization hook, node routes, the CNI server, the local API;
7. once policies are realized (`policy_ready`) and node routes synced, delete the flows of every
   older round (cookie-masked) and persist the new round;
8. watch a canary flow: when ovs-vswitchd restarted and lost its tables, replay every flow.

The agent never deletes flows on exit: pods keep their connectivity while it restarts.

Composition: the features are imported directly and the configuration decides which run
(``enableNetworkPolicy``, ``antreaProxy``). Each takes a typed view of the agent
(`antrea.agent.host`): NetworkPolicy realization ``networkpolicy.start(agent: PolicyHost)`` is
called once the pipeline is installed and BEFORE the local API starts, and gets:

- ``agent.app``: the aiohttp ``Application`` of the local API (add routes before it starts);
- ``agent.registry``: the prometheus ``CollectorRegistry`` served at /metrics;
- ``agent.flow_client`` (`FlowClient`) and ``agent.writer`` (`CoalescingWriter`): submit flows
  under your own owners; ``agent.cookie(Category.NETWORK_POLICY, obj)`` gives cookies of the
  current round (``agent.round_num``);
- ``agent.interface_store``: local pods (by container, pod, ofport, IP) and
  ``add_listener(fn(event, config))`` for pods appearing/going away;
- ``agent.node_name``, ``agent.api_client`` (kubernetes-asyncio ApiClient), ``agent.cfg``;
- ``agent.policy_ready`` (asyncio.Event): SET IT once the initial policy set is realized, so
  the previous round's flows can be deleted (the agent waits ``policyReadyTimeout`` at most);
- ``agent.controller_connected``: set it to reflect the controller stream (shown in agentinfo);
- ``agent.add_task(coro)``: run a background task owned (and cancelled) by the agent.
With ``enableNetworkPolicy: false``, ``policy_ready`` is set by the agent itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from antrea.agent import netlink, networkpolicy, proxy, uplink
from antrea.agent.apiserver import AgentMetrics, build_app
from antrea.agent.bridge import (
    BridgeState,
    flow_restore_complete,
    init_bridge,
    next_round,
    persist_round,
)
from antrea.agent.cniserver.podconfig import PodConfigurator, pod_owner
from antrea.agent.cniserver.server import CNIMetrics, CNIServer
from antrea.agent.config import TUNNEL_OVERHEAD, AgentConfig
from antrea.agent.interfacestore import InterfaceStore, from_external_ids
from antrea.agent.ipam import IPAM
from antrea.agent.kube import ApiClientNodeAPI, NodeAPI, NodeInfo, node_info, watch_nodes
from antrea.agent.noderoute import NodeRouteController
from antrea.agent.openflow.builder import FlowBuilder, NodeConfig, PodPort
from antrea.agent.openflow.pipeline import CANARY_TABLE, TABLE_NAMES
from antrea.agent.owners import BaseOwner
from antrea.agent.secureapi import SecureAPI
from antrea.apis.agentapi import AGENTINFO
from antrea.ovs import ovsconfig
from antrea.ovs.errors import OvsError
from antrea.ovs.openflow.bundle import FlowTransport, OfctlBundleTransport, mgmt_target
from antrea.ovs.openflow.client import CoalescingWriter, FlowClient, Owner
from antrea.ovs.openflow.cookie import (
    Category,
    cookie_round,
    make_cookie,
    round_category_filter,
    round_filter,
)
from antrea.ovs.openflow.flow import Flow, FlowFilter
from antrea.ovs.openflow.groups import Group
from antrea.ovs.openflow.native import OpenFlowTransport
from antrea.ovs.openflow.render import render_filter
from antrea.ovs.ovsconfig import OvsdbClient
from antrea.ovs.ovsctl import OfCtl
from antrea.util.metrics import add_runtime_collectors
from antrea.util.supervisor import Supervisor
from antrea.util.version import package_version

if TYPE_CHECKING:
    from antrea.agent.networkpolicy import PolicyAgent
    from antrea.agent.proxy.proxier import Proxier

log = structlog.get_logger(__name__)


class MeteredTransport:
    """The bundle transport with duration/size histograms and an error count."""

    def __init__(self, inner: FlowTransport, metrics: AgentMetrics) -> None:
        self.inner = inner
        self.metrics = metrics
        self.errors = 0

    async def bundle(
        self,
        *,
        add: Sequence[Flow] = (),
        modify: Sequence[Flow] = (),
        delete: Sequence[Flow] = (),
        set_groups: Sequence[Group] = (),
        delete_groups: Sequence[Group] = (),
    ) -> None:
        n = len(add) + len(modify) + len(delete) + len(set_groups) + len(delete_groups)
        if not n:
            return
        start = time.perf_counter()
        try:
            await self.inner.bundle(
                add=add,
                modify=modify,
                delete=delete,
                set_groups=set_groups,
                delete_groups=delete_groups,
            )
        except OvsError:
            self.errors += 1
            raise
        finally:
            self.metrics.bundle_duration.observe(time.perf_counter() - start)
            self.metrics.bundle_size.observe(n)


class Agent:
    def __init__(
        self,
        cfg: AgentConfig,
        *,
        node_api: NodeAPI | None = None,
        api_client: Any = None,
    ) -> None:
        self.cfg = cfg
        self.node_name = cfg.nodeName
        self.node_api = node_api
        self.api_client = api_client
        self.ovsdb = OvsdbClient(cfg.db_target)
        self.ofctl = OfCtl(
            mgmt_target(cfg.ovsBridge, cfg.ovsRunDir), bridge=cfg.ovsBridge, rundir=cfg.ovsRunDir
        )
        self.registry = CollectorRegistry()
        add_runtime_collectors(self.registry)
        self.metrics = AgentMetrics(self.registry)
        inner: FlowTransport
        if cfg.flowTransport == "ofctl":
            inner = OfctlBundleTransport(self.ofctl.target)
        else:
            # a held OpenFlow connection; when ovs-vswitchd restarts, check the canary at once
            inner = OpenFlowTransport(self.ofctl.target, on_reconnect=self._check_ovs)
        self.transport = MeteredTransport(inner, self.metrics)
        self.flow_client = FlowClient(self.transport)
        self.writer = CoalescingWriter(self.flow_client)
        self.interface_store = InterfaceStore()
        self.cni_metrics = CNIMetrics(self.registry)
        self.policy_ready = asyncio.Event()
        self.ready = asyncio.Event()
        self.controller_connected = False
        self.round_num = 0
        self.previous_rounds: set[int] = set()
        self.round_persisted = False
        self.replays = 0
        self.started_at = time.monotonic()
        self.ovs_version = ""
        self.mtu = 0
        self.gateway_mac = ""
        self.transport_dev = ""
        # What connect_uplink moved to the uplink bridge (given back at stop), if anything.
        self.moved_uplink: uplink.UplinkConfig | None = None
        self.node: NodeInfo | None = None
        self.builder: FlowBuilder | None = None
        self.ipam: IPAM | None = None
        self.pods: PodConfigurator | None = None
        self.node_routes: NodeRouteController | None = None
        self.proxier: Proxier | None = None
        self.network_policy: PolicyAgent | None = None
        self.cni_server: CNIServer | None = None
        self.app: web.Application = build_app(self)
        self._runner: web.AppRunner | None = None
        self.secure_api: SecureAPI | None = None
        self.ovs_seen_at: float | None = None  # last time the OVS canary check answered
        self.tasks = Supervisor("agent")

    # -- helpers for extensions ----------------------------------------------------------
    def cookie(self, category: Category, object_id: int = 0) -> int:
        return make_cookie(self.round_num, category, object_id)

    def add_task(self, coro: Coroutine[Any, Any, Any], name: str = "") -> asyncio.Task[Any]:
        return self.tasks.spawn(name or getattr(coro, "__name__", "task"), coro)

    def flow_builder(self) -> FlowBuilder:
        assert self.builder is not None, "agent not started"
        return self.builder

    # -- start-up ----------------------------------------------------------------------
    async def _own_node(self) -> NodeInfo:
        assert self.node_api is not None
        delay = 0.5
        while True:
            try:
                obj = await self.node_api.get_node(self.node_name)
            except Exception as exc:
                log.warning("node_read_failed", node=self.node_name, error=repr(exc))
                obj = None
            if obj is not None:
                info = node_info(obj)
                if info.pod_cidr is not None:
                    return info
                log.info("node_pod_cidr_pending", node=self.node_name)
            else:
                log.info("node_not_found_yet", node=self.node_name)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def start(self) -> None:
        cfg = self.cfg
        if self.node_api is None:
            from antrea.k8s.resources import load_api_client

            self.api_client = await load_api_client(
                cfg.kubeconfig or None, server=cfg.kubeAPIServerOverride or None
            )
            self.node_api = ApiClientNodeAPI(self.api_client)
        node = self.node = await self._own_node()
        assert node.pod_cidr is not None and node.gateway_ip is not None
        log.info("node_read", node=node.name, pod_cidr=str(node.pod_cidr), ip=str(node.internal_ip))
        # Early, so that kubelet's liveness probe answers while the rest starts (readyz: not yet).
        await self._start_secure_api(node)

        bridge = await self._init_bridge()
        self.ovs_version = await self._ovs_version()
        await self._configure_host(node)

        # Round: above anything persisted or still installed (a crashed predecessor may have
        # installed a round it never persisted; those flows are live, so don't delete them).
        present = {cookie_round(f.cookie) for f in await self.ofctl.dump_flows(stats=False)}
        present.discard(0)
        self.round_num = next_round(max(present | {bridge.previous_round}))
        self.previous_rounds = present - {self.round_num}
        await self.ofctl.delete_flows(round_filter(self.round_num))
        self.builder = FlowBuilder(
            NodeConfig(
                pod_cidr=node.pod_cidr,
                gateway_ip=node.gateway_ip,
                gateway_mac=self.gateway_mac,
                encap=cfg.encap,
            ),
            round_num=self.round_num,
        )
        log.info("flow_round_selected", round=self.round_num, previous=sorted(self.previous_rounds))

        await self._restore_interfaces()
        self.ipam = IPAM(node.pod_cidr, cfg.state_path)
        await self._release_leaked_ips()

        plan = await self.flow_client.sync(self._base_flows())
        log.info("pipeline_installed", flows=len(plan.add), round=self.round_num)
        await flow_restore_complete(self.ovsdb)

        self.node_routes = NodeRouteController(
            node_name=self.node_name,
            writer=self.writer,
            builder=self.flow_builder,
            encap=cfg.encap,
            gateway_dev=cfg.hostGateway,
            transport_dev=self.transport_dev,
            local_pod_cidr=node.pod_cidr,
        )
        self.add_task(watch_nodes(self.api_client, self.node_routes.handle), "node_watch")

        self.pods = PodConfigurator(
            bridge=cfg.ovsBridge,
            ovsdb=self.ovsdb,
            writer=self.writer,
            builder=self.flow_builder,
            store=self.interface_store,
            ipam=self.ipam,
            mtu=self.mtu,
            disable_tx_checksum=cfg.disableTXChecksumOffload,
        )
        self.cni_server = CNIServer(
            socket_path=cfg.cniSocket,
            pods=self.pods,
            ready=self.ready,
            metrics=self.cni_metrics,
            policy_ready=self.policy_ready if cfg.waitForPolicyOnAdd else None,
        )
        await self._start_policy()
        await self._start_proxy()
        await self.cni_server.start()
        self.ready.set()
        await self._install_cni()
        await self._start_api()
        self.ovs_seen_at = time.monotonic()
        self.add_task(self._finish_round(), "round_cleanup")
        self.add_task(self._watch_ovs(), "ovs_canary")
        log.info("agent_started", node=self.node_name, round=self.round_num, mtu=self.mtu)

    async def _init_bridge(self) -> BridgeState:
        delay = 0.5
        while True:  # OVS may still be starting: wait for it rather than exit
            try:
                return await init_bridge(self.cfg, self.ovsdb)
            except OvsError as exc:
                log.warning("bridge_init_failed_retrying", error=str(exc)[:300])
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _ovs_version(self) -> str:
        version = await self.ovsdb.ovs_version()
        if version:
            return version
        try:  # ovs_version is filled by ovs-ctl; a bare ovs-vswitchd leaves it empty
            out = await self.ofctl.appctl("version")
        except OvsError:
            return ""
        return out.split()[-1] if out.split() else ""

    async def _configure_host(self, node: NodeInfo) -> None:
        cfg = self.cfg
        assert node.pod_cidr is not None and node.gateway_ip is not None
        transport_mtu = 1500
        if cfg.uplink_bridge and not cfg.transportInterface and node.internal_ip is not None:
            moved = await uplink.connect_uplink(self.ovsdb, cfg.uplink_bridge, node.internal_ip)
            self.moved_uplink = moved or self.moved_uplink
        if cfg.transportInterface:
            self.transport_dev = cfg.transportInterface
            found_mtu = await asyncio.to_thread(netlink.interface_mtu, self.transport_dev)
            transport_mtu = found_mtu or 1500
        elif node.internal_ip is not None:
            found = await asyncio.to_thread(netlink.interface_for_address, node.internal_ip)
            if found is not None:
                self.transport_dev, transport_mtu = found
        if cfg.defaultMTU:
            self.mtu = cfg.defaultMTU
        else:
            self.mtu = transport_mtu - (TUNNEL_OVERHEAD[cfg.tunnelType] if cfg.encap else 0)
        gw_if = ipaddress.IPv4Interface(f"{node.gateway_ip}/{node.pod_cidr.prefixlen}")
        self.gateway_mac = await asyncio.to_thread(
            lambda: netlink.configure_gateway(
                cfg.hostGateway, gw_if, self.mtu, disable_tx_checksum=cfg.disableTXChecksumOffload
            )
        )
        with contextlib.suppress(OSError):
            await asyncio.to_thread(netlink.set_sysctl, "net/ipv4/ip_forward", "1")

    async def _restore_interfaces(self) -> None:
        """Rebuild the interface store from OVSDB; drop ports whose veth is gone."""
        for row in await self.ovsdb.interfaces():
            cfg = from_external_ids(row.name, row.ofport, row.external_ids)
            if cfg is None:
                continue
            if row.ofport > 0 and await asyncio.to_thread(netlink.link_exists, row.name):
                self.interface_store.add(cfg)
                continue
            log.info("stale_pod_port_removed", interface=row.name, pod=cfg.pod_key)
            await self.ovsdb.transact([ovsconfig.del_port(self.cfg.ovsBridge, row.name)])
        log.info("interface_store_restored", pods=len(self.interface_store))

    async def _release_leaked_ips(self) -> None:
        assert self.ipam is not None and self.node_api is not None
        keep_ips: list[ipaddress.IPv4Address] = []
        try:
            for pod in await self.node_api.list_pods_on_node(self.node_name):
                for entry in (pod.get("status") or {}).get("podIPs") or []:
                    with contextlib.suppress(ValueError):
                        keep_ips.append(ipaddress.IPv4Address(str(entry.get("ip"))))
        except Exception as exc:
            # Without pod status we only know OVS: keep everything rather than risk a reuse.
            log.warning("pod_list_failed_keeping_all_ips", error=repr(exc))
            return
        await self.ipam.reconcile(
            keep_containers=[c.container_id for c in self.interface_store.list()],
            keep_ips=keep_ips,
        )

    def _base_flows(self) -> dict[Owner, list[Flow]]:
        b = self.flow_builder()
        desired: dict[Owner, list[Flow]] = {
            BaseOwner.PIPELINE: b.pipeline_flows(),
            BaseOwner.GATEWAY: b.gateway_flows(),
            BaseOwner.CANARY: [b.canary_flow()],
        }
        if self.cfg.encap:
            desired[BaseOwner.TUNNEL] = b.tunnel_flows()
        for c in self.interface_store.list():
            desired[pod_owner(c.container_id)] = b.pod_flows(PodPort(c.ofport, c.ip, c.mac))
        return desired

    async def _start_policy(self) -> None:
        if not self.cfg.enableNetworkPolicy:
            self.policy_ready.set()
            return
        self.network_policy = networkpolicy.start(self)
        log.info("network_policy_started")

    async def _start_proxy(self) -> None:
        if not self.cfg.antreaProxy or self.api_client is None:
            return
        self.proxier = await proxy.start(self)

    async def _install_cni(self) -> None:
        try:
            from antrea.agent.cniserver.install import install_plugin, write_conflist

            await asyncio.to_thread(
                lambda: install_plugin(Path(self.cfg.cniBinDir), socket=self.cfg.cniSocket)
            )
            await asyncio.to_thread(
                lambda: write_conflist(
                    Path(self.cfg.cniConfDir), mtu=self.mtu, socket=self.cfg.cniSocket
                )
            )
            log.info("cni_installed", conf_dir=self.cfg.cniConfDir, bin_dir=self.cfg.cniBinDir)
        except Exception as exc:
            log.warning("cni_install_failed", error=repr(exc))

    async def _start_api(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.cfg.apiPort, reuse_address=True)
        await site.start()
        log.info("agent_api_started", port=self.cfg.apiPort)

    async def _start_secure_api(self, node: NodeInfo) -> None:
        """HTTPS /livez, /readyz, /metrics on the node address (agent/secureapi.py)."""
        bind = self.cfg.secureAPIBindAddress
        if bind == "none" or self.api_client is None:
            return
        host = bind or (str(node.internal_ip) if node.internal_ip else "")
        if not host:
            log.warning("secure_api_disabled_no_node_address", node=self.node_name)
            return
        from antrea.agent.apiserver import metrics_handler
        from antrea.k8s.resources import ApiClientResources
        from antrea.k8s.reviews import AccessReviewer, TokenAuthenticator
        from antrea.util.health import Check

        kube = ApiClientResources(self.api_client)
        self.secure_api = SecureAPI(
            livez=[Check("ping", lambda: None), Check("background-tasks", self._tasks_alive)],
            readyz=[
                Check("agent-started", lambda: None if self.ready.is_set() else "starting"),
                Check("ovs-connection", self._ovs_connected),
                Check("background-tasks", self._tasks_alive),
            ],
            metrics=lambda request: metrics_handler(self),
            authenticator=TokenAuthenticator(kube),
            reviewer=AccessReviewer(kube),
            operator={AGENTINFO: self._agentinfo_response},
        )
        await self.secure_api.start(
            host, self.cfg.apiPort, [host, self.node_name, "localhost", "127.0.0.1"]
        )

    async def _agentinfo_response(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(await self.info())

    def _tasks_alive(self) -> str | None:
        # A task that failed; one-shot tasks (round_cleanup, networkpolicy_ready) that returned
        # are fine: counting them kept a healthy agent unready forever on a real kubelet.
        dead = self.tasks.failed()
        return f"stopped: {', '.join(dead)}" if dead else None

    def _ovs_connected(self) -> str | None:
        if self.ovs_seen_at is None:
            return "not checked yet"
        age = time.monotonic() - self.ovs_seen_at
        if age > max(3 * self.cfg.ovsCheckInterval, 10.0):
            return f"ovs-vswitchd has not answered for {age:.0f}s"
        return None

    # -- rounds and OVS restarts -------------------------------------------------------
    async def _finish_round(self) -> None:
        """Delete older rounds once everything is re-installed, then persist the round.

        If the policy realization is not ready in time, only the previous rounds' non-policy
        flows go (pod and node flows were all re-installed at start); their policy flows stay
        until the policy is realized, so a slow controller never opens isolated pods.
        """
        if self.node_routes is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.node_routes.synced.wait(), 30)
        try:
            await asyncio.wait_for(self.policy_ready.wait(), self.cfg.policyReadyTimeout)
        except TimeoutError:
            log.warning("policy_not_ready_in_time", timeout=self.cfg.policyReadyTimeout)
            keep = {Category.NETWORK_POLICY}
            filters = [
                round_category_filter(r, c)
                for r in sorted(self.previous_rounds)
                for c in Category
                if c not in keep
            ]
            await self._delete_with_retry(filters)
            await self.policy_ready.wait()
        await self._delete_with_retry([round_filter(r) for r in sorted(self.previous_rounds)])
        log.info("stale_rounds_deleted", rounds=sorted(self.previous_rounds))
        self.previous_rounds.clear()
        while True:
            try:
                await persist_round(self.cfg, self.ovsdb, self.round_num)
                break
            except OvsError as exc:
                log.warning("round_persist_failed", error=str(exc))
                await asyncio.sleep(2)
        self.round_persisted = True
        log.info("flow_round_persisted", round=self.round_num)

    async def _delete_with_retry(self, filters: list[FlowFilter]) -> None:
        for flt in filters:
            while True:
                try:
                    await self.ofctl.delete_flows(flt)
                    break
                except OvsError as exc:
                    log.warning(
                        "stale_flows_delete_failed", filter=render_filter(flt), error=str(exc)
                    )
                    await asyncio.sleep(2)

    async def _watch_ovs(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.ovsCheckInterval)
            await self._check_ovs()

    async def _check_ovs(self) -> None:
        """Replay every flow if ovs-vswitchd lost them (its canary flow is gone)."""
        try:
            canary = await self.ofctl.dump_flows(FlowFilter(table=CANARY_TABLE), stats=False)
        except OvsError:
            return  # ovs-vswitchd down or restarting: check again later
        self.ovs_seen_at = time.monotonic()
        if not canary and self.node is not None:  # (before init the first sync installs all)
            log.warning("ovs_flows_lost_replaying")
            try:
                await self.replay()
            except Exception as exc:
                log.warning("flow_replay_failed", error=repr(exc))

    async def replay(self) -> None:
        """After ovs-vswitchd lost its tables: gateway, pod ofports, every flow, host routes."""
        assert self.node is not None
        await init_bridge(self.cfg, self.ovsdb)
        await self._configure_host(self.node)
        rows = {r.name: r for r in await self.ovsdb.interfaces()}
        for c in self.interface_store.list():
            row = rows.get(c.interface_name)
            if row is not None and row.ofport > 0 and row.ofport != c.ofport:
                # A re-created port may get another number: re-state that pod's flows.
                self.interface_store.delete(c.container_id)
                moved = from_external_ids(row.name, row.ofport, row.external_ids)
                if moved is not None:
                    self.interface_store.add(moved)
                    await self.writer.submit(
                        pod_owner(moved.container_id),
                        self.flow_builder().pod_flows(PodPort(moved.ofport, moved.ip, moved.mac)),
                    )
        if self.proxier is not None:  # groups first: replayed flows point at them
            await self.proxier.replay_groups()
        n = await self.flow_client.replay()
        await flow_restore_complete(self.ovsdb)
        self.replays += 1
        if self.node_routes is not None:
            await self.node_routes.reinstall_routes()
        log.info("flows_replayed", flows=n)

    # -- info and metrics ----------------------------------------------------------------
    async def info(self) -> dict[str, Any]:
        node = self.node
        return {
            "nodeName": self.node_name,
            "version": package_version(),
            "podCIDR": str(node.pod_cidr) if node and node.pod_cidr else "",
            "nodeIP": str(node.internal_ip) if node and node.internal_ip else "",
            "gatewayIP": str(node.gateway_ip) if node and node.gateway_ip else "",
            "gatewayMAC": self.gateway_mac,
            "bridge": self.cfg.ovsBridge,
            "datapathType": self.cfg.ovsDatapathType,
            "trafficEncapMode": self.cfg.trafficEncapMode,
            "tunnelType": self.cfg.tunnelType if self.cfg.encap else "",
            "mtu": self.mtu,
            "ovsVersion": self.ovs_version,
            "round": self.round_num,
            "roundPersisted": self.round_persisted,
            "flowCount": len(self.flow_client),
            "localPodCount": len(self.interface_store),
            "remoteNodes": sorted(self.node_routes.nodes) if self.node_routes else [],
            "controllerConnected": bool(self.controller_connected),
            "policyReady": self.policy_ready.is_set(),
            "flowReplays": self.replays,
            "uptimeSeconds": round(time.monotonic() - self.started_at, 1),
        }

    async def refresh_metrics(self) -> None:
        m = self.metrics
        m.local_pods.set(len(self.interface_store))
        m.round.set(self.round_num)
        m.count_errors("ovsdb", self.ovsdb.errors)
        m.count_errors("openflow", self.ofctl.errors)
        m.count_errors("bundle", self.transport.errors)
        try:
            counts = await self.ofctl.flow_counts()
        except OvsError:
            return
        m.flow_count.clear()
        for table, n in sorted(counts.items()):
            m.flow_count.labels(str(table), TABLE_NAMES.get(table, "")).set(n)
        m.total_flows.set(sum(counts.values()))

    # -- shutdown ------------------------------------------------------------------------
    async def stop(self) -> None:
        """Stop serving; flows, ports and routes stay (pods keep their connectivity)."""
        await self.tasks.stop()
        if self.cni_server is not None:
            await self.cni_server.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.secure_api is not None:
            await self.secure_api.stop()
        if self.api_client is not None:
            with contextlib.suppress(Exception):
                await self.api_client.close()
        if self.moved_uplink is not None:
            try:
                await asyncio.to_thread(
                    uplink.release_uplink, self.moved_uplink, self.cfg.uplink_bridge
                )
            except Exception as exc:
                log.warning("uplink_release_failed", error=repr(exc))
        log.info("agent_stopped", node=self.node_name)


async def run_agent(cfg: AgentConfig) -> None:
    """Run the agent until cancelled (SIGTERM in `antrea agent` cancels it)."""
    agent = Agent(cfg)
    try:
        await agent.start()
        await asyncio.Event().wait()
    finally:
        await agent.stop()
