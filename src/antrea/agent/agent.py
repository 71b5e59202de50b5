"""The agent role: `Agent` composes the node's features; `run_agent(cfg)` runs it until cancelled.

Each feature is a small object named for its role that owns its flows through the typed owners
of `antrea.agent.owners` and states them through the one bundle interface (`FlowClient` /
`CoalescingWriter` over the metered `FlowTransport`, `agent/flowtransport.py`):

| feature | module | flows it owns |
| --- | --- | --- |
| `HostNetwork`: bridge, uplink, gw0, MTU | `hostnet.py` | none (OVSDB, netlink) |
| `FlowRounds`: this run's round, old rounds' clean-up | `rounds.py` | none (deletes old rounds) |
| `BasePipeline`: table defaults, gw0, tun0 | `basepipeline.py` | `BaseOwner` (but CANARY) |
| `OvsCanary`: ovs-vswitchd lost its tables? | `canary.py` | `BaseOwner.CANARY` |
| `FlowReplay`: everything again after that | `replay.py` | replays every owner's flows |
| `LocalPods`: interface store, IPAM, CNI commands | `localpods.py` | `PodOwner` |
| `NodeRouteController`: other nodes | `noderoute.py` | `NodeOwner` |
| `OperatorAPI`: HTTPS livez/readyz/metrics | `operatorapi.py` | none |
| NetworkPolicy realization | `networkpolicy/` | `PolicyOwner` tuples |
| AntreaProxy | `proxy/` | `ProxyOwner` tuples |

agentinfo and the scrape-time gauges are `status.py`'s. Start-up order:

1. read this Node (spec.podCIDR, InternalIP) from the Kubernetes API, retrying until it has them;
   start the HTTPS operator endpoints (`OperatorAPI`: liveness answers during a long start);
2. converge br-int / gw0 / tun0 in one OVSDB transaction, configure gw0 (`HostNetwork`);
3. pick the new flow round (`FlowRounds.select`);
4. rebuild the interface store from OVSDB, release leaked IPs (`LocalPods.restore`);
5. install pipeline + gateway + tunnel + canary + every known pod's flows in ONE bundle (adds
   overwrite the previous round's flows in place);
6. start node routes, NetworkPolicy realization, AntreaProxy, the CNI server, the local API;
7. once policies are realized (`policy_ready`) and node routes synced, delete the flows of every
   older round and persist the new round (`FlowRounds.finish`);
8. watch the canary flow: when ovs-vswitchd restarted and lost its tables, replay every flow.

The agent never deletes flows on exit: pods keep their connectivity while it restarts.

The configuration decides which features run (``enableNetworkPolicy``, ``antreaProxy``). The
NetworkPolicy realization and AntreaProxy get the agent through the typed views of
`antrea.agent.host` (`PolicyHost`, `ProxyHost`); ``networkpolicy.start`` is called once the
pipeline is installed and BEFORE the local API starts, and sets ``policy_ready`` once the
initial policy set is realized (with ``enableNetworkPolicy: false`` the agent sets it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from antrea.agent import networkpolicy, proxy
from antrea.agent.apiserver import AgentMetrics, build_app, metrics_handler
from antrea.agent.basepipeline import BasePipeline
from antrea.agent.bridge import flow_restore_complete
from antrea.agent.canary import OvsCanary
from antrea.agent.cniserver.server import CNIMetrics, CNIServer
from antrea.agent.config import AgentConfig
from antrea.agent.flowtransport import make_transport
from antrea.agent.hostnet import HostNetwork
from antrea.agent.interfacestore import InterfaceStore
from antrea.agent.kube import ApiClientNodeAPI, NodeAPI, NodeInfo, own_node, watch_nodes
from antrea.agent.localpods import LocalPods
from antrea.agent.noderoute import NodeRouteController
from antrea.agent.openflow.builder import FlowBuilder, NodeConfig
from antrea.agent.operatorapi import OperatorAPI
from antrea.agent.replay import FlowReplay
from antrea.agent.rounds import FlowRounds
from antrea.agent.status import agent_info, refresh_metrics
from antrea.ovs.openflow.bundle import mgmt_target
from antrea.ovs.openflow.client import CoalescingWriter, FlowClient
from antrea.ovs.openflow.cookie import Category
from antrea.ovs.ovsconfig import OvsdbClient
from antrea.ovs.ovsctl import OfCtl
from antrea.util.metrics import add_runtime_collectors
from antrea.util.supervisor import Supervisor

if TYPE_CHECKING:
    from antrea.agent.networkpolicy import PolicyAgent
    from antrea.agent.proxy.proxier import Proxier
    from antrea.k8s.resources import KubeApiClient

log = structlog.get_logger(__name__)


class Agent:
    def __init__(
        self,
        cfg: AgentConfig,
        *,
        node_api: NodeAPI | None = None,
        api_client: KubeApiClient | None = None,
    ) -> None:
        self.cfg = cfg
        self.node_name = cfg.nodeName
        self.node_api = node_api
        self.api_client = api_client
        self.node: NodeInfo | None = None
        self.ovsdb = OvsdbClient(cfg.db_target)
        self.ofctl = OfCtl(
            mgmt_target(cfg.ovsBridge, cfg.ovsRunDir), bridge=cfg.ovsBridge, rundir=cfg.ovsRunDir
        )
        self.registry = CollectorRegistry()
        add_runtime_collectors(self.registry)
        self.metrics = AgentMetrics(self.registry)
        self.tasks = Supervisor("agent")
        self.started_at = time.monotonic()
        self.policy_ready = asyncio.Event()
        self.ready = asyncio.Event()
        self.controller_connected = False
        self.interface_store = InterfaceStore()
        self.cni_metrics = CNIMetrics(self.registry)
        # the features (see the module's table)
        self.host = HostNetwork(cfg, self.ovsdb, self.ofctl)
        self.rounds = FlowRounds(cfg, self.ovsdb, self.ofctl)
        self.pods = LocalPods(cfg, self.ovsdb, self.interface_store)
        self.canary = OvsCanary(self.ofctl, interval=cfg.ovsCheckInterval, on_lost=self._replay)
        self.transport = make_transport(
            cfg, self.ofctl.target, self.metrics, on_reconnect=self.canary.check
        )
        self.flow_client = FlowClient(self.transport)
        self.writer = CoalescingWriter(self.flow_client)
        self.replay = FlowReplay(self.flow_client, self.ovsdb)
        self.builder: FlowBuilder | None = None
        self.node_routes: NodeRouteController | None = None
        self.proxier: Proxier | None = None
        self.network_policy: PolicyAgent | None = None
        self.cni_server: CNIServer | None = None
        self.operator_api = OperatorAPI(
            cfg,
            tasks=self.tasks,
            ready=self.ready,
            ovs_connected=self.canary.connected,
            metrics=lambda request: metrics_handler(self),
            agentinfo=self.info,
        )
        self.app: web.Application = build_app(self)
        self._runner: web.AppRunner | None = None

    # -- what the features read (agent/host.py) ------------------------------------------
    @property
    def round_num(self) -> int:
        return self.rounds.round_num

    @property
    def gateway_mac(self) -> str:
        return self.host.gateway_mac

    def cookie(self, category: Category, object_id: int = 0) -> int:
        return self.rounds.cookie(category, object_id)

    def add_task(self, coro: Coroutine[Any, Any, Any], name: str = "") -> asyncio.Task[Any]:
        return self.tasks.spawn(name or getattr(coro, "__name__", "task"), coro)

    def flow_builder(self) -> FlowBuilder:
        assert self.builder is not None, "agent not started"
        return self.builder

    # -- start-up ----------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.cfg
        if self.node_api is None:
            from antrea.k8s.resources import load_api_client

            self.api_client = await load_api_client(
                cfg.kubeconfig or None, server=cfg.kubeAPIServerOverride or None
            )
            self.node_api = ApiClientNodeAPI(self.api_client)
        node = self.node = await own_node(self.node_api, self.node_name)
        assert node.pod_cidr is not None and node.gateway_ip is not None
        log.info("node_read", node=node.name, pod_cidr=str(node.pod_cidr), ip=str(node.internal_ip))
        # Early, so that kubelet's liveness probe answers while the rest starts (readyz: not yet).
        await self.operator_api.start(node, self.api_client)

        bridge = await self.host.init_bridge()
        await self.host.configure(node)
        await self.rounds.select(bridge.previous_round)
        builder = self.builder = FlowBuilder(
            NodeConfig(
                pod_cidr=node.pod_cidr,
                gateway_ip=node.gateway_ip,
                gateway_mac=self.host.gateway_mac,
                encap=cfg.encap,
            ),
            round_num=self.rounds.round_num,
        )
        await self.pods.restore(node.pod_cidr, self.node_api, self.node_name)

        # the start-up bundle: every feature's flows at once
        plan = await self.flow_client.sync(
            {
                **BasePipeline(builder, encap=cfg.encap).flows(),
                **self.canary.flows(builder),
                **self.pods.flows(builder),
            }
        )
        log.info("pipeline_installed", flows=len(plan.add), round=self.rounds.round_num)
        await flow_restore_complete(self.ovsdb)
        self.canary.arm()
        self.replay.before += [
            lambda: self.host.replay(node),
            lambda: self.pods.replay(self.writer, self.flow_builder()),
        ]

        self.node_routes = NodeRouteController(
            node_name=self.node_name,
            writer=self.writer,
            builder=self.flow_builder,
            encap=cfg.encap,
            gateway_dev=cfg.hostGateway,
            transport_dev=self.host.transport_dev,
            local_pod_cidr=node.pod_cidr,
        )
        self.replay.after.append(self.node_routes.reinstall_routes)
        self.add_task(watch_nodes(self.api_client, self.node_routes.handle), "node_watch")

        self.cni_server = CNIServer(
            socket_path=cfg.cniSocket,
            pods=self.pods.serve(self.writer, self.flow_builder, self.host.mtu),
            ready=self.ready,
            metrics=self.cni_metrics,
            policy_ready=self.policy_ready if cfg.waitForPolicyOnAdd else None,
        )
        await self._start_policy()
        await self._start_proxy()
        await self.cni_server.start()
        self.ready.set()
        await self.pods.install_cni(self.host.mtu)
        await self._start_api()
        routes_synced = self.node_routes.synced
        self.add_task(self.rounds.finish(self.policy_ready, routes_synced), "round_cleanup")
        self.add_task(self.canary.watch(), "ovs_canary")
        log.info(
            "agent_started", node=self.node_name, round=self.rounds.round_num, mtu=self.host.mtu
        )

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
        # groups first: the replayed flows point at them
        self.replay.before.append(self.proxier.replay_groups)

    async def _start_api(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.cfg.apiPort, reuse_address=True)
        await site.start()
        log.info("agent_api_started", port=self.cfg.apiPort)

    async def _replay(self) -> None:
        await self.replay.run()

    # -- info and metrics ----------------------------------------------------------------
    async def info(self) -> dict[str, Any]:
        return agent_info(self)

    async def refresh_metrics(self) -> None:
        await refresh_metrics(self)

    # -- shutdown ------------------------------------------------------------------------
    async def stop(self) -> None:
        """Stop serving; flows, ports and routes stay (pods keep their connectivity)."""
        await self.tasks.stop()
        if self.cni_server is not None:
            await self.cni_server.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.operator_api.stop()
        if self.api_client is not None:
            with contextlib.suppress(Exception):
                await self.api_client.close()
        await self.host.release_uplink()
        log.info("agent_stopped", node=self.node_name)


async def run_agent(cfg: AgentConfig) -> None:
    """Run the agent until cancelled (SIGTERM in `antrea agent` cancels it)."""
    agent = Agent(cfg)
    try:
        await agent.start()
        await asyncio.Event().wait()
    finally:
        await agent.stop()
