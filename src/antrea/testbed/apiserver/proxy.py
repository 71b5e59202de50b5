"""``pods/proxy`` and ``services/proxy``: requests forwarded to a pod, as kube-apiserver does.

URLs: ``/api/v1/namespaces/<ns>/pods/<[scheme:]name[:port]>/proxy/<path>`` and the same with
``services``. The name segment is kube-apiserver's ``SplitSchemeNamePort``: one to three
``:``-separated parts, the scheme ``http`` (default) or ``https``, the name non-empty.

- Authorization is the caller's ``pods/proxy`` (``services/proxy``) with the verb of the HTTP
  method (``GET`` -> get, ``POST`` -> create, ...), the name the whole segment, as RBAC sees it.
- A pod is reached at its ``status.podIP`` and the given port (default: the first declared
  container port, else 80/443); a Service through one of its ready endpoints (Endpoints, else
  EndpointSlices) at the endpoint port of the named (default: first) service port. Loopback,
  link-local and unspecified addresses are refused (kube-apiserver's ``IsProxyableIP``).
- HTTPS targets are dialed without verifying their certificate, as kube-apiserver does.
- Method, query, body and end-to-end headers are forwarded; ``Authorization`` (the caller's
  credentials to this server), ``Impersonate-*`` and hop-by-hop headers are not. The
  response's status, headers and body are streamed back. Upgrades (WebSockets) are refused.

How the server connects can be replaced (`Dialer`): the lab's server lives in the host's
network namespace while node addresses live in the underlay namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from antrea.testbed.apiserver import errors
from antrea.testbed.apiserver.routing import ResourcePath
from antrea.testbed.apiserver.store import Store

JSON = dict[str, Any]

VALID_SCHEMES = ("", "http", "https")
PROXY_RESOURCES = ("pods", "services")
DIAL_TIMEOUT = 10.0
CHUNK = 64 * 1024
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Not forwarded to the target: credentials for this server and what the proxy recomputes.
DROPPED_REQUEST = HOP_BY_HOP | {"authorization", "host", "content-length"}
DROPPED_RESPONSE = HOP_BY_HOP | {"content-length"}

# (host, port, TLS context or None for plain TCP, TLS server name) -> a connected stream.
Dialer = Callable[
    [str, int, ssl.SSLContext | None, str],
    Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
]


async def default_dial(
    host: str, port: int, ctx: ssl.SSLContext | None, server_hostname: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(
        host, port, ssl=ctx, server_hostname=server_hostname if ctx else None
    )


def split_scheme_name_port(segment: str) -> tuple[str, str, str] | None:
    """``[scheme:]name[:port]`` -> (scheme, name, port); None when not of that form."""
    parts = segment.split(":")
    if len(parts) == 1:
        scheme, name, port = "", parts[0], ""
    elif len(parts) == 2:
        scheme, name, port = "", parts[0], parts[1]
    elif len(parts) == 3:
        scheme, name, port = parts
    else:
        return None
    if not name or scheme not in VALID_SCHEMES:
        return None
    return scheme, name, port


def join_scheme_name_port(scheme: str, name: str, port: str) -> str:
    if scheme:
        return f"{scheme}:{name}:{port}"
    return f"{name}:{port}" if port else name


@dataclass(frozen=True, slots=True)
class ProxyPath:
    resource: str  # pods | services
    namespace: str
    segment: str  # the name segment as given (what RBAC sees as the name)
    scheme: str
    name: str
    port: str
    path: str  # forwarded path, starts with "/"

    def target(self) -> ResourcePath:
        return ResourcePath(
            group="",
            version="v1",
            resource=self.resource,
            namespace=self.namespace,
            name=self.segment,
            subresource="proxy",
        )


def parse_proxy_path(raw_path: str) -> ProxyPath | None:
    """The proxy request in ``raw_path`` (no query), or None if it is not one."""
    parts = raw_path.lstrip("/").split("/", 7)
    if len(parts) < 7 or parts[:3] != ["api", "v1", "namespaces"] or parts[6] != "proxy":
        return None
    namespace, resource, segment = parts[3], parts[4], parts[5]
    if resource not in PROXY_RESOURCES or not namespace:
        return None
    split = split_scheme_name_port(segment)
    if split is None:
        return None
    scheme, name, port = split
    rest = "/" + parts[7] if len(parts) == 8 else "/"
    return ProxyPath(resource, namespace, segment, scheme, name, port, rest)


def _proxyable(ip: str) -> str:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        raise errors.bad_request(f"address {ip!r} is not an IP address") from None
    if addr.is_loopback or addr.is_link_local or addr.is_unspecified:
        raise errors.bad_request(f"address not allowed: {ip}")
    return ip


def _port_number(port: str) -> int:
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise errors.bad_request(f"invalid port {port!r}")
    return int(port)


def resolve(store: Store, p: ProxyPath) -> tuple[str, str, int]:
    """(scheme, IP, port) to forward ``p`` to."""
    scheme = p.scheme or "http"
    default = 443 if scheme == "https" else 80
    if p.resource == "pods":
        pod = store.get(("", "pods"), p.namespace, p.name)
        if pod is None:
            raise errors.not_found(group="", resource="pods", name=p.name)
        ip = str((pod.get("status") or {}).get("podIP") or "")
        if not ip:
            raise errors.bad_request(f"pod {p.name} has no IP address")
        port = p.port
        if not port:
            for c in (pod.get("spec") or {}).get("containers") or ():
                ports = c.get("ports") or ()
                if ports and ports[0].get("containerPort"):
                    port = str(ports[0]["containerPort"])
                    break
        return scheme, _proxyable(ip), _port_number(port) if port else default
    service = store.get(("", "services"), p.namespace, p.name)
    if service is None:
        raise errors.not_found(group="", resource="services", name=p.name)
    sports = [sp for sp in (service.get("spec") or {}).get("ports") or () if isinstance(sp, dict)]
    sport = next(
        (
            sp
            for sp in sports
            if not p.port or sp.get("name", "") == p.port or str(sp.get("port")) == p.port
        ),
        None,
    )
    if sport is None:
        raise errors.service_unavailable(f'no service port "{p.port}" found for service "{p.name}"')
    for ep_ip, ep_port in _endpoints(store, p.namespace, p.name, str(sport.get("name") or "")):
        return scheme, _proxyable(ep_ip), ep_port
    raise errors.service_unavailable(f'no endpoints available for service "{p.name}"')


def _endpoints(store: Store, ns: str, name: str, port_name: str) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    endpoints = store.get(("", "endpoints"), ns, name)
    for subset in (endpoints or {}).get("subsets") or ():
        ports = [q for q in subset.get("ports") or () if q.get("name", "") == port_name]
        for q in ports[:1]:
            found += [(str(a["ip"]), int(q["port"])) for a in subset.get("addresses") or ()]
    if found:
        return found
    for sl in store.list(("discovery.k8s.io", "endpointslices"), ns):
        if (sl.get("metadata", {}).get("labels") or {}).get("kubernetes.io/service-name") != name:
            continue
        ports = [q for q in sl.get("ports") or () if (q.get("name") or "") == port_name]
        for q in ports[:1]:
            for ep in sl.get("endpoints") or ():
                if (ep.get("conditions") or {}).get("ready") is False:
                    continue
                found += [(str(a), int(q["port"])) for a in ep.get("addresses") or ()]
    return found


def _insecure_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def request_head(request: web.Request, p: ProxyPath, host: str, port: int, body: bytes) -> bytes:
    """The forwarded request line and headers."""
    query = request.raw_path.partition("?")[2]
    target = p.path + (f"?{query}" if query else "")
    hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"{request.method} {target} HTTP/1.1", f"Host: {hostport}"]
    for key, value in request.headers.items():
        k = key.lower()
        if k in DROPPED_REQUEST or k.startswith("impersonate-") or k == "x-forwarded-for":
            continue
        lines.append(f"{key}: {value}")
    forwarded = request.headers.get("X-Forwarded-For")
    remote = request.remote or ""
    lines.append(f"X-Forwarded-For: {forwarded + ', ' + remote if forwarded else remote}")
    if body or request.method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def forward(
    dial: Dialer, store: Store, request: web.Request, p: ProxyPath
) -> web.StreamResponse:
    if request.headers.get("Upgrade"):
        raise errors.bad_request("upgrade requests are not supported by this server's proxy")
    scheme, host, port = resolve(store, p)
    body = await request.read()
    ctx = _insecure_context() if scheme == "https" else None
    try:
        reader, writer = await asyncio.wait_for(dial(host, port, ctx, host), DIAL_TIMEOUT)
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        raise errors.service_unavailable(
            f"error trying to reach {p.resource[:-1]}: dial {host}:{port}: {str(exc) or 'timeout'}"
        ) from None
    try:
        writer.write(request_head(request, p, host, port, body) + body)
        await writer.drain()
        status, reason, headers = await _read_head(reader)
        resp = web.StreamResponse(status=status, reason=reason or None)
        for key, value in headers:
            if key.lower() not in DROPPED_RESPONSE:
                resp.headers.add(key, value)
        chunked = any(
            k.lower() == "transfer-encoding" and "chunked" in v.lower() for k, v in headers
        )
        length = next((int(v) for k, v in headers if k.lower() == "content-length"), None)
        if length is not None and not chunked:
            resp.content_length = length
        await resp.prepare(request)
        if request.method == "HEAD" or status in (204, 304):
            pass
        elif chunked:
            while True:
                size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    break
                await resp.write(await reader.readexactly(size))
                await reader.readexactly(2)
        elif length is not None:
            left = length
            while left > 0:
                data = await reader.read(min(CHUNK, left))
                if not data:
                    break
                left -= len(data)
                await resp.write(data)
        else:
            while data := await reader.read(CHUNK):
                await resp.write(data)
        await resp.write_eof()
        return resp
    except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
        raise errors.service_unavailable(
            f"error trying to reach {p.resource[:-1]}: {host}:{port}: {exc}"
        ) from None
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, str, list[tuple[str, str]]]:
    status_line = await reader.readline()
    parts = status_line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"malformed HTTP response {status_line[:80]!r}")
    headers: list[tuple[str, str]] = []
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        key, _, value = line.decode("latin-1").partition(":")
        headers.append((key.strip(), value.strip()))
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers
