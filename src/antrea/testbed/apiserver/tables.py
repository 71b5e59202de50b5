"""Server-side printing: `meta.k8s.io/v1` Table responses for ``kubectl get``.

kubectl asks for ``application/json;as=Table`` and prints whatever columns come back;
columns with ``priority > 0`` appear only with ``-o wide``. Cells are computed here the way
upstream's printers compute them, for the kinds users look at; every other kind (and custom
resources without printer columns) gets NAME and AGE.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any

from antrea.testbed.apiserver.resources import ResourceType

JSON = dict[str, Any]
Column = tuple[str, str, int, Callable[[JSON], Any]]  # name, type, priority, cell


def _meta(obj: JSON) -> JSON:
    meta: JSON = obj.get("metadata") or {}
    return meta


def human_duration(seconds: float) -> str:
    """Upstream's `duration.HumanDuration`: 45s, 5m3s, 3h, 2d5h, 300d, 3y45d."""
    s = int(seconds)
    if s < 0:
        return "<invalid>"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rem = s % 60
        return f"{minutes}m{rem}s" if rem else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rem = minutes % 60
        return f"{hours}h{rem}m" if rem else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rem = hours % 24
        return f"{hours // 24}d{rem}h" if rem else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def age(value: str | None) -> str:
    if not value:
        return "<unknown>"
    try:
        then = dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return "<unknown>"
    return human_duration((dt.datetime.now(dt.UTC) - then).total_seconds())


def _name(obj: JSON) -> str:
    return str(_meta(obj).get("name", ""))


def _age(obj: JSON) -> str:
    return age(_meta(obj).get("creationTimestamp"))


def _none(value: Any) -> str:
    return str(value) if value not in (None, "", []) else "<none>"


def _selector(sel: JSON | None) -> str:
    if not sel:
        return "<none>"
    parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for expr in sel.get("matchExpressions") or ():
        op, key, values = expr.get("operator"), expr.get("key"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts) if parts else "<none>"


# -- pods ------------------------------------------------------------------------------------


def _pod_ready(obj: JSON) -> str:
    containers = (obj.get("spec") or {}).get("containers") or []
    statuses = (obj.get("status") or {}).get("containerStatuses") or []
    ready = sum(1 for s in statuses if s.get("ready"))
    return f"{ready}/{len(containers)}"


def _pod_status(obj: JSON) -> str:
    status = obj.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for cs in status.get("containerStatuses") or ():
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
    if _meta(obj).get("deletionTimestamp"):
        reason = "Terminating"
    return str(reason)


def _pod_restarts(obj: JSON) -> int:
    return sum(
        int(s.get("restartCount") or 0)
        for s in (obj.get("status") or {}).get("containerStatuses") or ()
    )


def _pod_ip(obj: JSON) -> str:
    return _none((obj.get("status") or {}).get("podIP"))


def _pod_node(obj: JSON) -> str:
    return _none((obj.get("spec") or {}).get("nodeName"))


# -- nodes -----------------------------------------------------------------------------------


def _node_status(obj: JSON) -> str:
    conditions = (obj.get("status") or {}).get("conditions") or []
    state = "Unknown"
    for cond in conditions:
        if cond.get("type") == "Ready":
            state = "Ready" if cond.get("status") == "True" else "NotReady"
    if (obj.get("spec") or {}).get("unschedulable"):
        state += ",SchedulingDisabled"
    return state


def _node_roles(obj: JSON) -> str:
    prefix = "node-role.kubernetes.io/"
    roles = sorted(
        k[len(prefix) :] for k in (_meta(obj).get("labels") or {}) if k.startswith(prefix)
    )
    return ",".join(r for r in roles if r) or "<none>"


def _node_address(kind: str) -> Callable[[JSON], str]:
    def cell(obj: JSON) -> str:
        for addr in (obj.get("status") or {}).get("addresses") or ():
            if addr.get("type") == kind:
                return str(addr.get("address"))
        return "<none>"

    return cell


def _node_info(key: str) -> Callable[[JSON], str]:
    def cell(obj: JSON) -> str:
        return _none(((obj.get("status") or {}).get("nodeInfo") or {}).get(key))

    return cell


# -- services and friends ------------------------------------------------------------------


def _svc_ports(obj: JSON) -> str:
    ports = []
    for p in (obj.get("spec") or {}).get("ports") or ():
        text = f"{p.get('port')}"
        if p.get("nodePort"):
            text += f":{p['nodePort']}"
        ports.append(f"{text}/{p.get('protocol', 'TCP')}")
    return ",".join(ports) or "<none>"


def _svc_external(obj: JSON) -> str:
    ips = (obj.get("spec") or {}).get("externalIPs") or []
    ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    ips = [*ips, *(i.get("ip") or i.get("hostname") for i in ingress)]
    if ips:
        return ",".join(str(i) for i in ips)
    return "<pending>" if (obj.get("spec") or {}).get("type") == "LoadBalancer" else "<none>"


def _endpoints(obj: JSON) -> str:
    out: list[str] = []
    for subset in obj.get("subsets") or ():
        ports = subset.get("ports") or [{}]
        for addr in subset.get("addresses") or ():
            for port in ports:
                ip = addr.get("ip")
                out.append(f"{ip}:{port['port']}" if "port" in port else str(ip))
    if not out:
        return "<none>"
    if len(out) > 3:
        return ",".join(out[:3]) + f" + {len(out) - 3} more..."
    return ",".join(out)


def _event_object(obj: JSON) -> str:
    ref = obj.get("involvedObject") or {}
    return f"{str(ref.get('kind', '')).lower()}/{ref.get('name', '')}"


def _event_last_seen(obj: JSON) -> str:
    return age(
        obj.get("lastTimestamp") or obj.get("eventTime") or _meta(obj).get("creationTimestamp")
    )


_NAME: Column = ("Name", "string", 0, _name)
_AGE: Column = ("Age", "string", 0, _age)

COLUMNS: dict[tuple[str, str], list[Column]] = {
    ("", "pods"): [
        _NAME,
        ("Ready", "string", 0, _pod_ready),
        ("Status", "string", 0, _pod_status),
        ("Restarts", "string", 0, _pod_restarts),
        _AGE,
        ("IP", "string", 1, _pod_ip),
        ("Node", "string", 1, _pod_node),
        ("Nominated Node", "string", 1, lambda o: "<none>"),
        ("Readiness Gates", "string", 1, lambda o: "<none>"),
    ],
    ("", "nodes"): [
        _NAME,
        ("Status", "string", 0, _node_status),
        ("Roles", "string", 0, _node_roles),
        _AGE,
        ("Version", "string", 0, _node_info("kubeletVersion")),
        ("Internal-IP", "string", 1, _node_address("InternalIP")),
        ("External-IP", "string", 1, _node_address("ExternalIP")),
        ("OS-Image", "string", 1, _node_info("osImage")),
        ("Kernel-Version", "string", 1, _node_info("kernelVersion")),
        ("Container-Runtime", "string", 1, _node_info("containerRuntimeVersion")),
    ],
    ("", "namespaces"): [
        _NAME,
        ("Status", "string", 0, lambda o: (o.get("status") or {}).get("phase", "")),
        _AGE,
    ],
    ("", "services"): [
        _NAME,
        ("Type", "string", 0, lambda o: (o.get("spec") or {}).get("type", "")),
        ("Cluster-IP", "string", 0, lambda o: _none((o.get("spec") or {}).get("clusterIP"))),
        ("External-IP", "string", 0, _svc_external),
        ("Port(s)", "string", 0, _svc_ports),
        _AGE,
        (
            "Selector",
            "string",
            1,
            lambda o: (
                ",".join(
                    f"{k}={v}"
                    for k, v in sorted(((o.get("spec") or {}).get("selector") or {}).items())
                )
                or "<none>"
            ),
        ),
    ],
    ("", "endpoints"): [_NAME, ("Endpoints", "string", 0, _endpoints), _AGE],
    ("", "configmaps"): [
        _NAME,
        ("Data", "integer", 0, lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {})),
        _AGE,
    ],
    ("", "secrets"): [
        _NAME,
        ("Type", "string", 0, lambda o: o.get("type", "")),
        ("Data", "integer", 0, lambda o: len(o.get("data") or {})),
        _AGE,
    ],
    ("", "serviceaccounts"): [
        _NAME,
        ("Secrets", "integer", 0, lambda o: len(o.get("secrets") or [])),
        _AGE,
    ],
    ("", "events"): [
        ("Last Seen", "string", 0, _event_last_seen),
        ("Type", "string", 0, lambda o: o.get("type", "")),
        ("Reason", "string", 0, lambda o: o.get("reason", "")),
        ("Object", "string", 0, _event_object),
        ("Message", "string", 0, lambda o: o.get("message", "")),
    ],
    ("networking.k8s.io", "networkpolicies"): [
        _NAME,
        (
            "Pod-Selector",
            "string",
            0,
            lambda o: _selector((o.get("spec") or {}).get("podSelector")),
        ),
        _AGE,
    ],
    ("coordination.k8s.io", "leases"): [
        _NAME,
        ("Holder", "string", 0, lambda o: (o.get("spec") or {}).get("holderIdentity", "")),
        _AGE,
    ],
    ("apiextensions.k8s.io", "customresourcedefinitions"): [
        _NAME,
        ("Created At", "date", 0, lambda o: _meta(o).get("creationTimestamp", "")),
    ],
}


def _jsonpath(path: str) -> Callable[[JSON], Any]:
    """The simple ``.a.b`` / ``.a[0].b`` paths CRD printer columns use."""
    import re

    steps: list[str | int] = []
    for part in re.findall(r"\.([^.\[\]]+)|\[(\d+)\]", path):
        steps.append(part[0] if part[0] else int(part[1]))

    def cell(obj: JSON) -> Any:
        cur: Any = obj
        for step in steps:
            if isinstance(step, int):
                cur = cur[step] if isinstance(cur, list) and len(cur) > step else None
            else:
                cur = cur.get(step) if isinstance(cur, dict) else None
            if cur is None:
                return None
        return cur

    return cell


def columns_for(rt: ResourceType) -> list[Column]:
    known = COLUMNS.get(rt.key)
    if known is not None:
        return known
    if rt.printer_columns:
        cols: list[Column] = [_NAME]
        has_age = False
        for pc in rt.printer_columns:
            name = str(pc.get("name", ""))
            path = str(pc.get("jsonPath", ""))
            if path == ".metadata.creationTimestamp":
                has_age = True
                cols.append((name, "string", int(pc.get("priority", 0)), _age))
                continue
            cols.append(
                (name, str(pc.get("type", "string")), int(pc.get("priority", 0)), _jsonpath(path))
            )
        if not has_age:
            cols.append(_AGE)
        return cols
    return [_NAME, _AGE]


def _row_object(obj: JSON, include: str) -> JSON | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": _meta(obj)}


def to_table(
    rt: ResourceType,
    objects: Iterable[JSON],
    *,
    resource_version: str,
    include_object: str = "Metadata",
    list_meta: JSON | None = None,
) -> JSON:
    cols = columns_for(rt)
    rows = []
    for obj in objects:
        cells = []
        for _, _, _, fn in cols:
            try:
                value = fn(obj)
            except (KeyError, TypeError, ValueError, AttributeError):
                value = None
            cells.append(value if value is not None else "<none>")
        row: JSON = {"cells": cells}
        row_obj = _row_object(obj, include_object)
        if row_obj is not None:
            row["object"] = row_obj
        rows.append(row)
    meta: JSON = dict(list_meta or {})
    meta["resourceVersion"] = resource_version
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": [
            {
                "name": name,
                "type": typ,
                "format": "name" if name == "Name" else "",
                "description": "",
                "priority": prio,
            }
            for name, typ, prio, _ in cols
        ],
        "rows": rows,
    }
