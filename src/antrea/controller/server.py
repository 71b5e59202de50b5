"""The controller's HTTPS API: the agents' watch stream, antctl's list/get, status, metrics.

Routes (all JSON except the stream and status bodies, which are msgpack):

- ``GET  /healthz``, ``/livez``, ``/readyz`` - no authentication (kubelet's probes); /livez and
  /readyz report the candidate's named checks (util/health.py): ready means synced and either
  leading with its Endpoints published or standing by behind a live leader.
- ``GET  /apis/controlplane.antrea.io/v1beta2/watch?nodeName=N`` - chunked msgpack frames: the
  node's objects (``ADDED``), a ``BOOKMARK``, then deltas and periodic heartbeat bookmarks.
  Node identities may watch only their own node; 503 on a standby or before the inputs synced.
- ``POST /apis/controlplane.antrea.io/v1beta2/networkpolicies/status`` - one msgpack
  `NetworkPolicyNodeStatus` (codec.encode_status); a node may only report for itself.
- ``POST /apis/controlplane.antrea.io/v1beta2/networkpolicies/statuses`` - several statuses
  in one msgpack body (codec.encode_statuses), all of them for the reporting node.
- ``GET  /apis/controlplane.antrea.io/v1beta2/<resource>[/NAME]`` (networkpolicies,
  addressgroups, appliedtogroups) - admin; optional ``?nodeName=`` keeps objects whose span
  includes that node.
- ``POST /apis/controlplane.antrea.io/v1beta2/nodestatssummaries`` - one msgpack
  `NodeStatsSummary` (apis/stats/codec.py): a node's per-rule counters; only for itself.
- ``GET  /apis/stats.antrea.io/v1alpha1[/namespaces/NS]/<resource>[/NAME]``
  (networkpolicystats, antreanetworkpolicystats, antreaclusternetworkpolicystats) - admin:
  the counters aggregated across nodes (controller/stats.py, apis/stats/views.py).
- ``GET  /apis/system.antrea.io/v1beta1/controllerinfo`` - admin.
- ``GET  /metrics`` - any authenticated identity.
- ``POST /validate/...``, ``/mutate/...`` - admission webhooks (admission/webhook.py), called
  by the API server without credentials.

See docs/design/controlplane-protocol.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import ssl
import tarfile
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import structlog
from aiohttp import web

from antrea.apis.controlplane import names
from antrea.apis.controlplane.codec import DecodeError, decode_status, decode_statuses
from antrea.apis.controlplane.types import Kind, NetworkPolicy, PodReference
from antrea.apis.stats import names as stats_names
from antrea.apis.stats import views as stats_views
from antrea.apis.stats.codec import decode_summary
from antrea.apis.stats.types import TrafficStats
from antrea.controller import endpointquery, evaluation
from antrea.controller.admission.webhook import AdmissionHandlers
from antrea.controller.distribution import Dispatcher, StoreLike, iter_store
from antrea.controller.stats import StatsAggregator
from antrea.controller.status import StatusAggregator
from antrea.controller.views import object_json
from antrea.k8s.reviews import AccessReviewer, Identity
from antrea.util import logging as logutil
from antrea.util.health import Check, report
from antrea.util.supervisor import dump_tasks

log = structlog.get_logger(__name__)

CONTROLPLANE = names.PATH
SYSTEM = names.SYSTEM_PATH
STREAM_CONTENT_TYPE = names.STREAM_CONTENT_TYPE
RESOURCES = {
    "networkpolicies": Kind.NETWORK_POLICY,
    "addressgroups": Kind.ADDRESS_GROUP,
    "appliedtogroups": Kind.APPLIED_TO_GROUP,
}
INITIAL_CHUNK = 256 * 1024
STREAM_SNDBUF = 256 * 1024


class Authenticator(Protocol):
    async def authenticate(self, token: str) -> Identity | None: ...


class ControllerServer:
    """aiohttp application over the dispatcher/store; knows nothing of Kubernetes inputs."""

    def __init__(
        self,
        *,
        dispatcher: Dispatcher,
        store: StoreLike,
        authenticator: Authenticator,
        status: StatusAggregator,
        serving: Callable[[], str | None],
        info: Callable[[], dict[str, Any]],
        metrics_handler: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None,
        livez: Sequence[Check] = (),
        readyz: Sequence[Check] = (),
        heartbeat: float = 5.0,
        write_timeout: float = 10.0,
        admission: AdmissionHandlers | None = None,
        stats: StatsAggregator | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.store = store
        self.authenticator = authenticator
        self.status = status
        self.stats = stats if stats is not None else StatsAggregator(self._known_policy)
        self.serving = serving  # None when ready to serve streams, else the reason why not
        self.info = info
        self.metrics_handler = metrics_handler
        self.livez_checks = list(livez)
        self.readyz_checks = list(readyz)
        self.heartbeat = heartbeat
        self.write_timeout = write_timeout
        self.admission = admission
        self._runner: web.AppRunner | None = None
        self._streams: set[asyncio.Task[Any]] = set()
        kube = getattr(authenticator, "kube", None)
        self.reviewer = AccessReviewer(kube) if kube is not None else None

    # --- app -----------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/livez", self.livez)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get(names.WATCH_PATH, self.watch)
        app.router.add_post(names.STATUS_PATH, self.post_status)
        app.router.add_post(names.STATUSES_PATH, self.post_statuses)
        app.router.add_get(names.ENDPOINT_QUERIES_PATH, self.endpointquery)
        app.router.add_post(stats_names.SUMMARY_PATH, self.post_stats)
        for path in (
            "/{resource}",
            "/{resource}/{name}",
            "/namespaces/{namespace}/{resource}",
            "/namespaces/{namespace}/{resource}/{name}",
        ):
            app.router.add_get(stats_names.PATH + path, self.get_stats)
        app.router.add_get(names.EVALUATION_PATH, self.networkpolicyevaluation)
        app.router.add_get(CONTROLPLANE + "/{resource}", self.list_objects)
        app.router.add_get(CONTROLPLANE + "/{resource}/{name}", self.get_object)
        app.router.add_get(f"{SYSTEM}/controllerinfo", self.controllerinfo)
        app.router.add_get(f"{SYSTEM}/loglevel", self.loglevel)
        app.router.add_get(f"{SYSTEM}/supportbundle", self.supportbundle)
        app.router.add_put(f"{SYSTEM}/loglevel", self.loglevel)
        app.router.add_get("/metrics", self.metrics)
        if self.admission is not None:
            self.admission.add_routes(app)
        return app

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None) -> int:
        """Listen; returns the bound port (useful with port 0 in tests)."""
        self._runner = web.AppRunner(self.build_app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context, reuse_address=True)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        bound = sockets[0].getsockname()[1] if sockets else port
        log.info("controller_api_listening", host=host, port=bound, tls=ssl_context is not None)
        return int(bound)

    async def stop(self) -> None:
        self.dispatcher.close_all("server stopping")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- auth ----------------------------------------------------------------------------

    async def _identity(self, request: web.Request) -> Identity:
        # Through the Kubernetes API's services/proxy (antctl --via-apiserver) the caller's
        # token comes in its own header: the API server does not forward Authorization.
        header = request.headers.get("Authorization", "") or request.headers.get(
            names.PROXIED_AUTHORIZATION_HEADER, ""
        )
        if not header.lower().startswith("bearer ") or not header[7:].strip():
            raise _error(web.HTTPUnauthorized, "bearer token required")
        try:
            ident = await self.authenticator.authenticate(header[7:].strip())
        except Exception as exc:
            log.warning("token_review_failed", error=str(exc))
            raise _error(web.HTTPServiceUnavailable, "cannot review token") from exc
        if ident is None:
            raise _error(web.HTTPUnauthorized, "invalid token")
        return ident

    async def _admin(
        self, request: web.Request, verb: str = "", group: str = "", resource: str = ""
    ) -> Identity:
        """An operator request (antctl): ``system:masters``, or whoever RBAC allows ``verb``
        on ``resource`` of ``group`` (a SubjectAccessReview, cached briefly)."""
        ident = await self._identity(request)
        if ident.is_admin:
            return ident
        if not verb:
            verb, group, resource = _operator_attributes(request)
        name = request.match_info.get("name", "")
        namespace = request.match_info.get("namespace", "")
        if self.reviewer is not None:
            try:
                allowed = await self.reviewer.allowed_resource(
                    ident, verb, group, resource, name, namespace=namespace
                )
            except Exception as exc:
                log.warning("subject_access_review_failed", error=str(exc))
                raise _error(web.HTTPServiceUnavailable, "cannot review the access") from exc
            if allowed:
                return ident
        raise _error(
            web.HTTPForbidden,
            f'user "{ident.user}" cannot {verb} resource "{resource}" in API group "{group}"',
        )

    # --- handlers ------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def livez(self, request: web.Request) -> web.Response:
        return report(self.livez_checks, "verbose" in request.query)

    async def readyz(self, request: web.Request) -> web.Response:
        return report(self.readyz_checks, "verbose" in request.query)

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        await self._identity(request)
        if self.metrics_handler is None:
            raise web.HTTPNotFound()
        return await self.metrics_handler(request)

    async def watch(self, request: web.Request) -> web.StreamResponse:
        ident = await self._identity(request)
        node = request.query.get("nodeName", "")
        if not node:
            raise _error(web.HTTPBadRequest, "nodeName is required")
        if not ident.may_act_for_node(node):
            raise _error(web.HTTPForbidden, f"user {ident.user!r} may not watch node {node!r}")
        reason = self.serving()
        if reason is not None:
            raise _error(web.HTTPServiceUnavailable, reason)
        wire = stream_version(request.headers.get("Accept", ""))
        watcher, initial = self.dispatcher.register(node, ident.user, wire)
        task = asyncio.current_task()
        if task is not None:
            self._streams.add(task)
        resp = web.StreamResponse(
            headers={
                "Content-Type": names.STREAM_CONTENT_TYPES[wire],
                "Cache-Control": "no-store",
            }
        )
        resp.enable_chunked_encoding()
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if sock is not None:
            # The per-watcher frame queue is the buffer that matters: a small kernel send buffer
            # bounds memory per agent and lets a stalled agent overflow its queue (and be
            # dropped) after ~STREAM_SNDBUF bytes rather than after megabytes of autotuning.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SNDBUF)
        try:
            await resp.prepare(request)
            await self._write_initial(resp, initial)
            while not watcher.closed:
                frames = await watcher.next_frames(self.heartbeat)
                if watcher.closed:
                    break
                data = b"".join(frames) if frames else self.dispatcher.heartbeat_frame(wire)
                await asyncio.wait_for(resp.write(data), self.write_timeout)
        except (ConnectionError, TimeoutError, asyncio.CancelledError) as exc:
            watcher.close(type(exc).__name__)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self.dispatcher.unregister(watcher)
            if task is not None:
                self._streams.discard(task)
            log.info(
                "watcher_closed",
                node=node,
                watcher=watcher.id,
                reason=watcher.close_reason,
                frames=watcher.frames_sent,
            )
        return resp

    async def _write_initial(self, resp: web.StreamResponse, frames: list[bytes]) -> None:
        chunk: list[bytes] = []
        size = 0
        for f in frames:
            chunk.append(f)
            size += len(f)
            if size >= INITIAL_CHUNK:
                await asyncio.wait_for(resp.write(b"".join(chunk)), self.write_timeout)
                chunk, size = [], 0
        if chunk:
            await asyncio.wait_for(resp.write(b"".join(chunk)), self.write_timeout)

    async def post_status(self, request: web.Request) -> web.Response:
        ident = await self._identity(request)
        try:
            st = decode_status(await request.read())
        except DecodeError as exc:
            raise _error(web.HTTPBadRequest, str(exc)) from exc
        if not ident.may_act_for_node(st.node):
            raise _error(web.HTTPForbidden, f"user {ident.user!r} may not report for {st.node!r}")
        self.status.report(st)
        return web.json_response({"status": "accepted"}, status=201)

    async def post_statuses(self, request: web.Request) -> web.Response:
        ident = await self._identity(request)
        try:
            statuses = decode_statuses(await request.read())
        except DecodeError as exc:
            raise _error(web.HTTPBadRequest, str(exc)) from exc
        for node in {st.node for st in statuses}:  # all or nothing
            if not ident.may_act_for_node(node):
                raise _error(web.HTTPForbidden, f"user {ident.user!r} may not report for {node!r}")
        for st in statuses:
            self.status.report(st)
        return web.json_response({"status": "accepted", "items": len(statuses)}, status=201)

    def _known_policy(self, name: str) -> bool:
        return self.store.get(Kind.NETWORK_POLICY, name) is not None

    async def post_stats(self, request: web.Request) -> web.Response:
        ident = await self._identity(request)
        try:
            summary = decode_summary(await request.read())
        except DecodeError as exc:
            raise _error(web.HTTPBadRequest, str(exc)) from exc
        if not ident.may_act_for_node(summary.node):
            raise _error(
                web.HTTPForbidden, f"user {ident.user!r} may not report for {summary.node!r}"
            )
        self.stats.report(summary)
        return web.json_response({"status": "accepted"}, status=201)

    async def get_stats(self, request: web.Request) -> web.Response:
        """The stats.antrea.io objects: one per policy of the resource's source type (zeros
        until an agent reports), ``ruleTrafficStats`` per named rule for Antrea-native ones."""
        resource = request.match_info["resource"]
        namespace = request.match_info.get("namespace")
        name = request.match_info.get("name")
        found = stats_names.RESOURCES.get(resource)
        if found is None or (namespace is not None and not found[2]):
            raise _error(web.HTTPNotFound, f"unknown resource {resource!r}")
        kind, source_type, namespaced = found
        if namespaced and name is not None and namespace is None:
            raise _error(web.HTTPNotFound, f"{kind} {name!r}: a namespace is required")
        verb = "get" if name else "list"
        await self._admin(request, verb, stats_names.GROUP_VERSION.split("/")[0], resource)
        items = []
        for obj, _span in iter_store(self.store, Kind.NETWORK_POLICY):
            if not isinstance(obj, NetworkPolicy):
                continue
            ref = obj.source_ref
            if ref.type != source_type:
                continue
            if namespace is not None and ref.namespace != namespace:
                continue
            if name is not None and ref.name != name:
                continue
            counters = self.stats.rules(obj.name)
            rules = None
            if source_type != "K8sNetworkPolicy":
                rules = {r.name: counters.get(r.name, TrafficStats()) for r in obj.rules if r.name}
            total = sum(counters.values(), TrafficStats())
            items.append(
                stats_views.stats_json(
                    kind,
                    name=ref.name,
                    namespace=ref.namespace,
                    uid=ref.uid,
                    total=total,
                    rules=rules,
                )
            )
        if name is not None:
            if not items:
                raise _error(web.HTTPNotFound, f"{kind} {name!r} not found")
            return web.json_response(items[0])
        return web.json_response(stats_views.list_json(kind, items))

    def _view(self, kind: Kind, obj: Any, span: frozenset[str]) -> dict[str, Any]:
        status = None
        if isinstance(obj, NetworkPolicy):
            status = self.status.status(obj.name, obj.generation, span)
        return object_json(obj, span, status)

    async def list_objects(self, request: web.Request) -> web.Response:
        await self._admin(request)
        kind = _resource(request)
        node = request.query.get("nodeName")
        items = [
            self._view(kind, obj, span)
            for obj, span in iter_store(self.store, kind)
            if node is None or node in span
        ]
        items.sort(key=lambda o: o["metadata"]["name"])
        return web.json_response({"kind": f"{kind}List", "items": items})

    async def get_object(self, request: web.Request) -> web.Response:
        await self._admin(request)
        kind = _resource(request)
        name = request.match_info["name"]
        got = self.store.get(kind, name)
        if got is None:
            raise _error(web.HTTPNotFound, f"{kind} {name!r} not found")
        return web.json_response(self._view(kind, got[0], frozenset(got[1])))

    async def controllerinfo(self, request: web.Request) -> web.Response:
        await self._admin(request, "get", "system.antrea.io", "controllerinfos")
        return web.json_response(self.info())

    async def endpointquery(self, request: web.Request) -> web.Response:
        """?namespace=NS&pod=NAME: the policies applied to the pod and the rules naming it."""
        await self._admin(request, "get", "controlplane.antrea.io", "endpointqueries")
        pod = request.query.get("pod", "")
        if not pod:
            raise _error(web.HTTPBadRequest, "pod is required")
        ns = request.query.get("namespace") or "default"
        return web.json_response(endpointquery.query(self.store, ns, pod))

    async def networkpolicyevaluation(self, request: web.Request) -> web.Response:
        """?source=NS/POD&destination=NS/POD: the rule that decides that traffic."""
        await self._admin(request, "get", "controlplane.antrea.io", "networkpolicyevaluation")
        pods = []
        for key in ("source", "destination"):
            ns, _, name = request.query.get(key, "").rpartition("/")
            if not name:
                raise _error(web.HTTPBadRequest, f"{key} is required (NAMESPACE/POD)")
            pods.append(PodReference(ns or "default", name))
        return web.json_response(evaluation.evaluate(self.store, pods[0], pods[1]))

    async def supportbundle(self, request: web.Request) -> web.Response:
        """A tar.gz: controller info, log level, asyncio task stacks, metrics, and the computed
        policies and groups (antctl supportbundle --controller)."""
        await self._admin(request, "get", "system.antrea.io", "supportbundles")
        files: dict[str, bytes] = {
            "controllerinfo.json": json.dumps(self.info(), indent=2, default=str).encode(),
            "loglevel.json": json.dumps({"level": logutil.get_level()}).encode(),
            "tasks.txt": dump_tasks().encode(),
        }
        for kind, plural in RESOURCE_FILES.items():
            items = [self._view(kind, obj, span) for obj, span in iter_store(self.store, kind)]
            files[f"{plural}.json"] = json.dumps(items, indent=2, default=str).encode()
        if self.metrics_handler is not None:
            resp = await self.metrics_handler(request)
            if isinstance(resp, web.Response) and isinstance(resp.body, bytes):
                files["metrics.prom"] = resp.body
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(f"controller/{name}")
                info.size = len(data)
                info.mtime = int(time.time())
                tar.addfile(info, io.BytesIO(data))
        return web.Response(body=buf.getvalue(), content_type="application/gzip")

    async def loglevel(self, request: web.Request) -> web.Response:
        """GET: the controller's log level; PUT ?level=L: change it now (antctl log-level)."""
        if request.method == "PUT":
            await self._admin(request, "update", "system.antrea.io", "loglevels")
            try:
                logutil.set_level(request.query.get("level", ""))
            except ValueError as exc:
                raise _error(web.HTTPBadRequest, str(exc)) from None
            log.info("log_level_changed", level=logutil.get_level())
        else:
            await self._admin(request, "get", "system.antrea.io", "loglevels")
        return web.json_response({"level": logutil.get_level()})


RESOURCE_FILES = {
    Kind.NETWORK_POLICY: "networkpolicies",
    Kind.ADDRESS_GROUP: "addressgroups",
    Kind.APPLIED_TO_GROUP: "appliedtogroups",
}


def _operator_attributes(request: web.Request) -> tuple[str, str, str]:
    """(verb, group, resource) of an operator GET/PUT: /apis/<group>/<version>/<resource>[/name]."""
    parts = [p for p in request.path.split("/") if p]
    group = parts[1] if len(parts) > 1 else ""
    resource = parts[3] if len(parts) > 3 else ""
    verb = "update" if request.method == "PUT" else "get" if len(parts) > 4 else "list"
    return verb, group, resource


def _resource(request: web.Request) -> Kind:
    kind = RESOURCES.get(request.match_info["resource"])
    if kind is None:
        raise _error(web.HTTPNotFound, f"unknown resource {request.match_info['resource']!r}")
    return kind


def stream_version(accept: str) -> int:
    """The wire version of a watch stream: 2 when the client's ``Accept`` names its media type
    (names.STREAM_CONTENT_TYPE_V2, without ``q=0``), else 1, which every client decodes."""
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if media.lower() != names.STREAM_CONTENT_TYPE_V2:
            continue
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    if float(value) <= 0:
                        return 1
                except ValueError:
                    return 1
        return 2
    return 1


def _error(cls: type[web.HTTPException], message: str) -> web.HTTPException:
    import json

    return cls(text=json.dumps({"message": message}), content_type="application/json")
