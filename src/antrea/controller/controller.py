"""`run_controller`: one controller candidate, wired together.

Every candidate is a hot standby: it runs the informers and the compiler all the time, so a
takeover only needs the Lease, not a re-computation. Only the leader serves watch streams (a
standby answers 503) and writes Endpoints ``kube-system/antrea``, which agents read to find it.

    informers --events--> compiler --changes--> Dispatcher --frames--> agents
                                            \\--> metrics, status bookkeeping
    LeaderElector --on_started--> publish CA + Endpoints, serve  /  --on_stopped--> close streams

The TLS identity: the shared CA comes from Secret ``antrea-controller-ca`` (first candidate
creates it), each candidate issues itself a serving certificate for its advertised address.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any

import structlog

from antrea.apis.controlplane.names import ENDPOINTS_NAME, ENDPOINTS_PORT_NAME
from antrea.apis.controlplane.types import Kind
from antrea.controller import certs
from antrea.controller.admission.webhook import AdmissionHandlers, KubeLookup
from antrea.controller.config import ControllerConfig
from antrea.controller.distribution import KIND_ORDER, Dispatcher, object_counts
from antrea.controller.endpointslice import SKIP_MIRROR_LABEL, pod_ref, publish_endpointslice
from antrea.controller.inputs import Inputs
from antrea.controller.leader import LeaderElector, LeaseTimings
from antrea.controller.metrics import ControllerMetrics, LiveState
from antrea.controller.networkpolicy import Change, NetworkPolicyController
from antrea.controller.policystatus import PolicyStatusWriter
from antrea.controller.server import ControllerServer
from antrea.controller.stats import StatsAggregator
from antrea.controller.status import StatusAggregator
from antrea.controller.tiers import ensure_static_tiers, sync_tier_finalizers
from antrea.k8s.resources import (
    JSON,
    ApiClientResources,
    Conflict,
    KubeError,
    KubeResources,
    ns_path,
)
from antrea.k8s.reviews import Identity, TokenAuthenticator
from antrea.util.health import Check
from antrea.util.supervisor import Supervisor
from antrea.util.version import package_version

log = structlog.get_logger(__name__)

ENDPOINTS_RECHECK = 10.0
BURST_GRACE = 5.0  # a stream may lag behind one large compiler batch for this long


async def node_internal_ip(kube: KubeResources, node: str) -> str | None:
    obj = await kube.get(f"/api/v1/nodes/{node}")
    for addr in ((obj or {}).get("status") or {}).get("addresses") or []:
        if addr.get("type") == "InternalIP":
            return str(addr["address"])
    return None


def _address(namespace: str, address: str, node: str) -> JSON:
    ref = pod_ref(namespace)  # what kube-apiserver's services/proxy requires of an address
    return {"ip": address, "nodeName": node, **({"targetRef": ref} if ref else {})}


def endpoints_body(namespace: str, address: str, port: int, node: str) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": ENDPOINTS_NAME,
            "namespace": namespace,
            "labels": {SKIP_MIRROR_LABEL: "true"},  # we write the EndpointSlice ourselves
        },
        "subsets": [
            {
                "addresses": [_address(namespace, address, node)],
                "ports": [{"name": ENDPOINTS_PORT_NAME, "port": port, "protocol": "TCP"}],
            }
        ],
    }


async def publish_endpoints(
    kube: KubeResources, namespace: str, address: str, port: int, node: str
) -> bool:
    """Make Endpoints ``antrea`` point at us; True when a write was needed."""
    path = ns_path("v1", namespace, "endpoints", ENDPOINTS_NAME)
    want = endpoints_body(namespace, address, port, node)
    cur = await kube.get(path)
    if cur is None:
        try:
            await kube.create(ns_path("v1", namespace, "endpoints"), want)
        except Conflict:
            return await publish_endpoints(kube, namespace, address, port, node)
        return True
    have_labels = (cur.get("metadata") or {}).get("labels") or {}
    if cur.get("subsets") == want["subsets"] and have_labels.get(SKIP_MIRROR_LABEL) == "true":
        return False
    body = dict(cur)
    body["metadata"] = {**cur["metadata"], "labels": {**have_labels, SKIP_MIRROR_LABEL: "true"}}
    body["subsets"] = want["subsets"]
    await kube.replace(path, body)
    return True


class ControllerCandidate:
    """State and lifecycle of one candidate (exposed for in-process tests)."""

    def __init__(
        self,
        cfg: ControllerConfig,
        kube: KubeResources,
        api_client: Any,
        *,
        compiler: NetworkPolicyController | None = None,
    ) -> None:
        self.cfg = cfg
        self.kube = kube
        self.api_client = api_client
        if compiler is None:
            compiler = NetworkPolicyController()
        self.compiler = compiler
        self.store = self.compiler.store
        self.metrics = ControllerMetrics()
        self.dispatcher = Dispatcher(
            self.store,
            burst_grace=BURST_GRACE,
            on_drop=lambda w: self.metrics.watchers_dropped.inc(),
        )
        self.status = StatusAggregator()
        # per-rule traffic counters reported by the agents (stats.antrea.io)
        self.stats = StatsAggregator(
            lambda name: self.store.get(Kind.NETWORK_POLICY, name) is not None
        )
        self.auth = TokenAuthenticator(kube)
        self.inputs = Inputs(self.compiler, api_client, self.metrics)
        self.leading = False
        self.advertise: str = cfg.advertise_address or ""
        self.port = cfg.controller_api_port
        self.ca_cert = b""
        self.started_at = time.time()
        self.elector = LeaderElector(
            kube,
            identity=cfg.node_name,
            namespace=cfg.lease_namespace,
            timings=LeaseTimings(cfg.lease_duration, cfg.renew_deadline, cfg.retry_period),
            on_started=self._on_started_leading,
            on_stopped=self._on_stopped_leading,
        )
        self.compiler.subscribe(self._on_change)
        # .status of Antrea-native policies, written while leading.
        self.policy_status = PolicyStatusWriter(kube, self.store, self.status)
        self.status.on_report = self.policy_status.mark
        self.server = ControllerServer(
            dispatcher=self.dispatcher,
            store=self.store,
            authenticator=self,
            status=self.status,
            stats=self.stats,
            serving=self.serving,
            info=self.info,
            metrics_handler=self._metrics_handler(),
            livez=[Check("ping", lambda: None), Check("roles", self._roles_running)],
            admission=AdmissionHandlers(KubeLookup(kube)),
            readyz=[
                Check("inputs-synced", self._inputs_synced),
                Check("leader-election", self._election_state),
                Check("roles", self._roles_running),
            ],
        )
        self.metrics.bind(
            LiveState(
                object_counts=lambda: object_counts(self.store),
                connected_agents=lambda: len(self.dispatcher.connected_nodes()),
                input_queue_length=self.inputs.queue_length,
                watch_queue_length=lambda: sum(len(w.queue) for w in self.dispatcher.watchers),
                is_leader=lambda: self.leading,
            )
        )
        # What runs only while leading (started and cancelled with the leadership).
        self.leader_tasks = Supervisor("controller-leader")
        self._roles: list[asyncio.Task[None]] = []
        self.published_at: float | None = None  # last successful CA + Endpoints publication

    # authenticator facade: counts cache misses in metrics
    async def authenticate(self, token: str) -> Identity | None:
        before = self.auth.reviews
        ident = await self.auth.authenticate(token)
        if self.auth.reviews > before:
            self.metrics.token_reviews.inc(self.auth.reviews - before)
        return ident

    def _metrics_handler(self) -> Any:
        from prometheus_client.aiohttp import make_aiohttp_handler

        return make_aiohttp_handler(self.metrics.registry)

    def _on_change(self, change: Change) -> None:
        self.dispatcher.on_change(change)
        self.metrics.processed[change.kind].inc()
        if change.kind is Kind.NETWORK_POLICY:
            if change.new is None:
                self.status.forget(change.name)
                self.stats.forget(change.name)
            else:
                self.policy_status.mark(change.name)

    def serving(self) -> str | None:
        if not self.leading:
            leader = self.elector.leader or "unknown"
            return f"not the leader (leader: {leader})"
        if not self.inputs.synced.is_set():
            return "inputs not synced yet"
        return None

    def info(self) -> dict[str, Any]:
        counts = object_counts(self.store)
        return {
            "apiVersion": "system.antrea.io/v1beta1",
            "kind": "AntreaControllerInfo",
            "metadata": {"name": "antrea-controller"},
            "nodeName": self.cfg.node_name,
            "version": package_version(),
            "leader": self.elector.leader,
            "isLeader": self.leading,
            "serving": self.serving() is None,
            "servingStatus": self.serving() or "serving",
            "endpoint": f"{self.advertise}:{self.port}",
            "connectedAgents": self.dispatcher.connected_nodes(),
            "connectedAgentCount": len(self.dispatcher.connected_nodes()),
            "networkPolicyCount": counts[Kind.NETWORK_POLICY],
            "addressGroupCount": counts[Kind.ADDRESS_GROUP],
            "appliedToGroupCount": counts[Kind.APPLIED_TO_GROUP],
            "inputsSynced": self.inputs.synced.is_set(),
            "leaseTransitions": self.elector.transitions,
            "startTime": self.started_at,
        }

    # --- health (controller API /livez, /readyz) ------------------------------------------

    def _roles_running(self) -> str | None:
        dead = [t.get_name() for t in self._roles if t.done()]
        return f"stopped: {', '.join(dead)}" if dead else None

    def _inputs_synced(self) -> str | None:
        return None if self.inputs.synced.is_set() else "informers not synced yet"

    def _election_state(self) -> str | None:
        """Leader: Endpoints published recently. Standby: it sees a leader (hot standby)."""
        if self.leading:
            if self.published_at is None:
                return "leading, Endpoints not published yet"
            age = time.monotonic() - self.published_at
            if age > 3 * ENDPOINTS_RECHECK:
                return f"leading, Endpoints not confirmed for {age:.0f}s"
            return None
        if not self.elector.leader:
            return "no leader observed yet"
        return None

    # --- leadership ----------------------------------------------------------------------

    async def _on_started_leading(self) -> None:
        self.leading = True
        self.leader_tasks.spawn("leader-duties", self._leader_duties())
        self.leader_tasks.spawn("policy-status", self.policy_status.run())

    async def _on_stopped_leading(self) -> None:
        self.leading = False
        self.published_at = None
        await self.leader_tasks.stop()
        self.dispatcher.close_all("leadership lost")

    async def _leader_duties(self) -> None:
        """Publish the CA and our endpoint, and keep the endpoint pointing at us."""
        ns = self.cfg.lease_namespace
        tiers_done = False
        while True:
            try:
                await certs.publish_ca(self.kube, self.ca_cert, ns)
                # The API server reaches our admission webhooks through Endpoints antrea with
                # this CA: both before the static tiers, whose creation is admitted by them.
                await certs.inject_ca_bundle(self.kube, self.ca_cert)
                args = (self.kube, ns, self.advertise, self.port, self.cfg.node_name)
                wrote = await publish_endpoints(*args)
                if await publish_endpointslice(*args) or wrote:
                    log.info(
                        "controller_endpoint_published", address=self.advertise, port=self.port
                    )
                self.published_at = time.monotonic()
                await self._sync_tiers()
                if not tiers_done:
                    await ensure_static_tiers(self.kube)
                    tiers_done = True
            except KubeError as exc:
                log.warning("leader_publish_failed", error=str(exc))
                await asyncio.sleep(1.0)
                continue
            await asyncio.sleep(ENDPOINTS_RECHECK)

    async def _sync_tiers(self) -> None:
        """Referenced (and static) Tiers carry a finalizer: they cannot be deleted."""
        ctx = getattr(self.compiler, "antrea_ctx", None)
        referenced = getattr(self.compiler, "referenced_tiers", None)
        if ctx is None or referenced is None or not self.inputs.synced.is_set():
            return
        await sync_tier_finalizers(self.kube, list(ctx.tiers), referenced())

    # --- lifecycle -----------------------------------------------------------------------

    async def _bootstrap_tls(self) -> ssl.SSLContext:
        ns = self.cfg.lease_namespace
        ca_key = b""
        while True:
            try:
                self.ca_cert, ca_key = await certs.ensure_ca(self.kube, ns)
                if not self.advertise:
                    self.advertise = await node_internal_ip(self.kube, self.cfg.node_name) or ""
                if self.advertise:
                    break
                log.info("waiting_for_node_address", node=self.cfg.node_name)
            except KubeError as exc:
                log.warning("tls_bootstrap_failed", error=str(exc))
            await asyncio.sleep(1.0)
        hosts = [self.advertise, "127.0.0.1", *certs.SERVICE_DNS]
        cert, key = certs.issue_serving_cert(self.ca_cert, ca_key, hosts)
        return certs.server_ssl_context(cert, key)

    async def run(self) -> None:
        ssl_ctx = await self._bootstrap_tls()
        self.port = await self.server.start(self.cfg.bind_address, self.port, ssl_ctx)
        try:
            async with asyncio.TaskGroup() as tg:
                self._roles = [
                    tg.create_task(self.inputs.run(), name="informers"),
                    tg.create_task(self.elector.run(), name="leader-election"),
                ]
        finally:
            await self.server.stop()


async def run_controller(cfg: ControllerConfig) -> None:
    """Run one controller candidate until cancelled."""
    from antrea.k8s.resources import load_api_client

    api_client = await load_api_client(cfg.kubeconfig, server=cfg.kube_api_server_override)
    try:
        cand = ControllerCandidate(cfg, ApiClientResources(api_client), api_client)
        log.info(
            "controller_starting",
            node=cfg.node_name,
            port=cfg.controller_api_port,
            kinds=[str(k) for k in KIND_ORDER],
        )
        await cand.run()
    finally:
        await api_client.close()
