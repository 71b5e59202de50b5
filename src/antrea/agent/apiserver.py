"""The agent's local HTTP API (127.0.0.1:apiPort in the node's namespace): antctl and /metrics.

Operators and Prometheus use the HTTPS endpoints on the node address instead (secureapi.py).

Routes: ``GET /podinterfaces``, ``/agentinfo``, ``/ovsflows`` (filters: ``table``, ``pod``
as ns/name, ``category``, ``cookie``), ``/metrics`` (Prometheus text), ``GET|PUT /loglevel``
(``antctl log-level``), ``/config`` and ``/debug/tasks`` (``antctl supportbundle``). Other
agent parts add routes to `Agent.app` before it starts (the NetworkPolicy realization adds
its own).
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from antrea.agent.openflow.pipeline import TABLE_NAMES
from antrea.apis import agentapi
from antrea.ovs.openflow.cookie import Category, category_filter
from antrea.ovs.openflow.flow import FlowFilter, IPAddr
from antrea.ovs.openflow.render import render_port_tokens
from antrea.ovs.ovsctl import DumpedFlow
from antrea.util import logging as logutil
from antrea.util.supervisor import dump_tasks

if TYPE_CHECKING:
    from antrea.agent.agent import Agent

log = structlog.get_logger(__name__)

AGENT_KEY: web.AppKey[Agent] = web.AppKey("agent")


class AgentMetrics:
    """Gauges refreshed on scrape; counters live next to the code that counts."""

    def __init__(self, registry: Any) -> None:
        self.flow_count = Gauge(
            "antrea_agent_ovs_flows",
            "Flows installed in an OVS table of the bridge.",
            ["table_id", "table_name"],
            registry=registry,
        )
        self.total_flows = Gauge(
            "antrea_agent_ovs_installed_flows",
            "Flows installed in all OVS tables of the bridge.",
            registry=registry,
        )
        self.local_pods = Gauge(
            "antrea_agent_local_pods",
            "Pods on this node attached to the pod network.",
            registry=registry,
        )
        self.ovs_errors = Counter(
            "antrea_agent_ovs_operation_errors",
            "Failed OVS operations (ovsdb, openflow, bundle) since the agent started.",
            ["operation"],
            registry=registry,
        )
        self._errors_seen: dict[str, int] = {}
        self.bundle_duration = Histogram(
            "antrea_agent_ovs_bundle_duration_seconds",
            "Time to apply one OpenFlow bundle (one ovs-ofctl --bundle process).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.bundle_size = Histogram(
            "antrea_agent_ovs_bundle_flows",
            "Flow operations (adds + modifies + deletes) per OpenFlow bundle.",
            buckets=(1, 5, 10, 50, 100, 500, 1000, 5000, 10000, 50000),
            registry=registry,
        )
        self.round = Gauge(
            "antrea_agent_flow_round",
            "Round number carried in the cookies of this agent's flows.",
            registry=registry,
        )

    def count_errors(self, operation: str, total: int) -> None:
        """Advance the error counter to `total` (the clients keep plain integer counts)."""
        delta = total - self._errors_seen.get(operation, 0)
        if delta > 0:
            self.ovs_errors.labels(operation).inc(delta)
        self._errors_seen[operation] = max(total, self._errors_seen.get(operation, 0))


def flow_json(f: DumpedFlow) -> dict[str, Any]:
    return {
        "table": f.table,
        "tableName": TABLE_NAMES.get(f.table, ""),
        "priority": f.priority,
        "cookie": f"{f.cookie:#x}",
        "match": f.match,
        "actions": f.actions,
        "packets": f.n_packets,
        "bytes": f.n_bytes,
        "flow": f.text,
    }


async def podinterfaces(request: web.Request) -> web.Response:
    agent = request.app[AGENT_KEY]
    ns = request.query.get("namespace")
    name = request.query.get("name")
    items = [
        c.to_json()
        for c in agent.interface_store.list()
        if (not ns or c.pod_namespace == ns) and (not name or c.pod_name == name)
    ]
    return web.json_response(items)


async def agentinfo(request: web.Request) -> web.Response:
    agent = request.app[AGENT_KEY]
    return web.json_response(await agent.info())


async def ovsflows(request: web.Request) -> web.Response:
    agent = request.app[AGENT_KEY]
    q = request.query
    table_id: int | None = None
    if "table" in q:
        table = q["table"]
        if table.isdigit():
            table_id = int(table)
        else:
            ids = [i for i, n in TABLE_NAMES.items() if n.lower() == table.lower()]
            if not ids:
                raise web.HTTPBadRequest(text=f"unknown table {table}")
            table_id = ids[0]
    flt = FlowFilter(table=table_id)
    if "category" in q:
        try:
            cat = category_filter(Category[q["category"].upper()])
        except KeyError:
            raise web.HTTPBadRequest(text=f"unknown cookie category {q['category']}") from None
        flt = dataclasses.replace(cat, table=table_id)
    elif "cookie" in q:
        value, _, mask = q["cookie"].partition("/")
        try:
            flt = FlowFilter(table_id, int(value, 0), int(mask, 0) if mask else None)
        except ValueError:
            raise web.HTTPBadRequest(text=f"bad cookie {q['cookie']}") from None
    flows = await agent.ofctl.dump_flows(flt)
    if "service" in q:
        from antrea.agent.proxy import matches

        ns, _, name = q["service"].rpartition("/")
        ns = ns or "default"
        proxier = agent.proxier
        if proxier is None or (ns, name) not in proxier.services:
            raise web.HTTPNotFound(text=f"service {ns}/{name} is not known to AntreaProxy")
        flows = [f for f in flows if matches(proxier, ns, name, f)]
    if "pod" in q:
        ns, _, name = q["pod"].rpartition("/")
        ifaces = agent.interface_store.by_pod(ns or "default", name)
        if not ifaces:
            raise web.HTTPNotFound(text=f"pod {q['pod']} has no interface on this node")
        flows = [f for f in flows if any(_flow_mentions(f, i.ofport, i.ip, i.mac) for i in ifaces)]
    return web.json_response([flow_json(f) for f in flows])


def _flow_mentions(f: DumpedFlow, ofport: int, ip: IPAddr, mac: str) -> bool:
    return not render_port_tokens(ofport, ip, mac).isdisjoint(f.tokens)


async def metrics(request: web.Request) -> web.Response:
    return await metrics_handler(request.app[AGENT_KEY])


async def metrics_handler(agent: Agent) -> web.Response:
    """The Prometheus text of the agent's registry (also served by agent/secureapi.py)."""
    await agent.refresh_metrics()
    body = generate_latest(agent.registry)
    resp = web.Response(body=body)
    resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    resp.charset = "utf-8"
    return resp


async def loglevel(request: web.Request) -> web.Response:
    """GET: the agent's log level; PUT ?level=L: change it now (antctl log-level)."""
    if request.method == "PUT":
        try:
            logutil.set_level(request.query.get("level", ""))
        except ValueError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        log.info("log_level_changed", level=logutil.get_level())
    return web.json_response({"level": logutil.get_level()})


async def config(request: web.Request) -> web.Response:
    """The agent's effective configuration (antctl supportbundle)."""
    agent = request.app[AGENT_KEY]
    return web.json_response(dataclasses.asdict(agent.cfg), dumps=_dumps)


async def tasks(request: web.Request) -> web.Response:
    """Every asyncio task with its stack: the goroutine dump of this process."""
    return web.Response(text=dump_tasks())


def _dumps(obj: object) -> str:
    return json.dumps(obj, default=str)


async def healthz(request: web.Request) -> web.Response:
    agent = request.app[AGENT_KEY]
    return web.Response(text="ok" if agent.ready.is_set() else "starting")


def build_app(agent: Agent) -> web.Application:
    app = web.Application()
    app[AGENT_KEY] = agent
    app.router.add_get(agentapi.PODINTERFACES, podinterfaces)
    app.router.add_get(agentapi.AGENTINFO, agentinfo)
    app.router.add_get(agentapi.OVSFLOWS, ovsflows)
    app.router.add_get(agentapi.METRICS, metrics)
    app.router.add_get(agentapi.HEALTHZ, healthz)
    app.router.add_get(agentapi.LOGLEVEL, loglevel)
    app.router.add_get(agentapi.CONFIG, config)
    app.router.add_get(agentapi.DEBUG_TASKS, tasks)
    app.router.add_put(agentapi.LOGLEVEL, loglevel)
    return app


def uptime(start: float) -> float:
    return round(time.monotonic() - start, 1)
