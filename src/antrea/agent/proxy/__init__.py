"""AntreaProxy: Services in br-int (ClusterIP load balancing, session affinity, NodePort).

`start(agent)` is called by the agent once the pipeline is installed (``antreaProxy: true``,
the default, and a Kubernetes API client): it installs the shared service flows and the REJECT
rule for Service ports without endpoints (``serviceCIDR``), then watches Services and
EndpointSlices and lets the `Proxier` realize them (`flows` builds the flows and groups; the
tables are documented in docs/design/ovs-pipeline.md). Metrics: ``antrea_proxy_*``.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import TYPE_CHECKING

import structlog

from antrea.agent.openflow.pipeline import CT_ZONE, GLOBAL_VIRTUAL_MAC
from antrea.agent.proxy import flows as pf
from antrea.agent.proxy.conntrack import flush_stale
from antrea.agent.proxy.nodeport import sync_nodeports
from antrea.agent.proxy.proxier import SHARED_OWNER, Proxier
from antrea.agent.proxy.reject import sync_reject, sync_route
from antrea.agent.proxy.watch import ENDPOINTSLICES, SERVICES, list_watch
from antrea.ovs.openflow.cookie import OBJECT_MASK, Category, cookie_category
from antrea.ovs.openflow.render import render_nat_dst
from antrea.ovs.ovsctl import DumpedFlow

if TYPE_CHECKING:
    from antrea.agent.host import ProxyHost

log = structlog.get_logger(__name__)
NODEPORT_NET = ipaddress.IPv4Network(pf.NODEPORT_ROUTE)

__all__ = ["Proxier", "matches", "start"]


async def start(agent: ProxyHost) -> Proxier:
    cfg = agent.cfg
    node = agent.node
    node_ips = tuple(ip for ip in [node.internal_ip] if ip is not None) if node else ()
    proxier = Proxier(
        writer=agent.writer,
        transport=agent.transport,
        cookie=agent.cookie,
        node_name=agent.node_name,
        node_ips=node_ips,
        registry=agent.registry,
    )
    proxier.flush_conntrack = lambda stale: flush_stale(agent.ofctl, CT_ZONE, stale)
    shared = pf.shared_flows(agent.cookie(Category.SERVICE))
    if not cfg.encap:
        shared += pf.noencap_flows(agent.gateway_mac, agent.cookie(Category.SERVICE))
    await agent.writer.submit(SHARED_OWNER, shared)
    if cfg.serviceCIDR:
        cidr = ipaddress.IPv4Network(cfg.serviceCIDR)

        def host_setup() -> None:
            sync_route(cidr, cfg.hostGateway, GLOBAL_VIRTUAL_MAC)
            sync_route(NODEPORT_NET, cfg.hostGateway, GLOBAL_VIRTUAL_MAC)
            sync_reject(cidr, cfg.hostGateway)
            sync_nodeports(proxier.nodeport_entries(), cfg.hostGateway, cfg.encap)

        proxier.host_setup = host_setup
        proxier.nodeport_sync = lambda entries: sync_nodeports(entries, cfg.hostGateway, cfg.encap)
        await asyncio.to_thread(host_setup)
    services, slices = asyncio.Event(), asyncio.Event()
    agent.add_task(list_watch(agent.api_client, SERVICES, proxier.on_service, synced=services),
                   "proxy_services")  # fmt: skip
    agent.add_task(list_watch(agent.api_client, ENDPOINTSLICES, proxier.on_slice, synced=slices),
                   "proxy_endpointslices")  # fmt: skip
    agent.add_task(proxier.run(), "proxy_sync")
    log.info("antrea_proxy_started", node_ips=[str(i) for i in node_ips])
    return proxier


def matches(proxier: Proxier, namespace: str, name: str, f: DumpedFlow) -> bool:
    """Whether a dumped flow belongs to the Service: its cookie object is one of the Service's
    groups (service and learned flows), or it DNATs to one of its endpoints (table 42)."""
    if cookie_category(f.cookie) is not Category.SERVICE:
        return False
    gids = {
        i.group_id
        for i in proxier.installed.values()
        if (i.port.namespace, i.port.name) == (namespace, name)
    }
    if f.cookie & OBJECT_MASK in gids:
        return True
    targets = {
        render_nat_dst(str(ep.ip), ep.port)
        for i in proxier.installed.values()
        if (i.port.namespace, i.port.name) == (namespace, name)
        for ep in i.endpoints
    }
    return any(t in f.actions for t in targets)
