"""The embedded Kubernetes-compatible API server: HTTPS, authentication, routing.

`APIServer` is what the lab starts in-process and what ``antrea apiserver`` runs. One
catch-all aiohttp route feeds every request through authentication, then either a discovery
document or the generic resource handlers (`rest.ResourceHandlers`); errors leave as
`metav1.Status` bodies. Extra listening sockets created elsewhere (the lab makes one inside
another network namespace) can be served with the same TLS context via `add_socket`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import socket
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path

import orjson
import structlog
from aiohttp import web

from antrea.testbed.apiserver import (
    authz,
    discovery,
    errors,
    heap,
    openapi,
    openapi_pb,
    podstreams,
    proxy,
    services,
)
from antrea.testbed.apiserver.auth import (
    Authorizer,
    Identity,
    RequestAttributes,
    TokenAuthenticator,
    format_token_line,
    new_token,
)
from antrea.testbed.apiserver.authz import reviews as access_reviews
from antrea.testbed.apiserver.certs import ServingCerts, ensure_certs
from antrea.testbed.apiserver.kubeconfig import render_kubeconfig, write_kubeconfig
from antrea.testbed.apiserver.limits import MAX_REQUEST_BODY_BYTES
from antrea.testbed.apiserver.persistence import Persistence, PersistError
from antrea.testbed.apiserver.resources import Registry
from antrea.testbed.apiserver.rest import ResourceHandlers
from antrea.testbed.apiserver.routing import GroupVersionPath, ResourcePath, parse_path
from antrea.testbed.apiserver.store import Store
from antrea.testbed.apiserver.webhooks import Dialer, Webhooks
from antrea.testbed.apiserver.wire import json_response
from antrea.util.pki import server_ssl_context

log = structlog.get_logger(__name__)

ADMIN = Identity(user="admin", uid="admin", groups=("system:masters",))
_HEALTH = ("/healthz", "/livez", "/readyz")
_STREAMS = ("log", "exec")
# The v2 protobuf content type as kube-apiserver answers it (Go's mime parser rejects "@").
OPENAPI_V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def _ssl_context(certs: ServingCerts) -> ssl.SSLContext:
    # The serving certificate followed by its CA: the full chain goes out in the handshake.
    return server_ssl_context(certs.cert_pem + certs.ca_pem, certs.key_pem, alpn=["http/1.1"])


class APIServer:
    """An embedded API server.

    Args:
        port: TCP port on ``bind_address`` (0 picks a free one; see `port` after `start`).
        data_dir: keeps objects (and, by default, certificates and the token file) across
            restarts; None keeps everything in memory.
        token_auth_file: static token CSV (``token,user,uid,"groups"``); without it an admin
            token is generated (and written to ``<data_dir>/tokens.csv`` when there is one).
        cert_dir: where the CA and serving certificate live (default ``<data_dir>/pki``).
        extra_sans: additional IPs/DNS names for the serving certificate.
        history: how many recent events watches can resume from before getting 410.
        service_cidr, service_node_port_range: where Services get their ClusterIP and
            NodePorts (ValueError when invalid).
        advertise_address: (IP, port) at which pods reach this server: the endpoint of the
            ``default/kubernetes`` Service, kept as kube-apiserver keeps it. None: no such
            Service.
        webhook_dial: how admission webhooks are connected to (`webhooks.Dialer`); default
            a plain TCP connection from this process's network namespace.
        proxy_dial: how ``pods/proxy`` and ``services/proxy`` reach their targets
            (`proxy.Dialer`); default as ``webhook_dial``'s.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        bind_address: str = "127.0.0.1",
        data_dir: Path | None = None,
        token_auth_file: Path | None = None,
        cert_dir: Path | None = None,
        extra_sans: Sequence[str] = (),
        history: int = 10000,
        watch_queue: int = 20000,
        bookmark_interval: float = 10.0,
        authorizer: Authorizer | None = None,
        event_ttl: float = 3600.0,
        service_cidr: str = services.DEFAULT_SERVICE_CIDR,
        service_node_port_range: str = services.DEFAULT_NODE_PORT_RANGE,
        advertise_address: tuple[str, int] | None = None,
        webhook_dial: Dialer | None = None,
        proxy_dial: proxy.Dialer | None = None,
    ) -> None:
        self.event_ttl = event_ttl
        self.service_network = services.ServiceNetwork.parse(service_cidr, service_node_port_range)
        self.advertise_address = advertise_address
        self._sweeper: asyncio.Task[None] | None = None
        self._port = port
        self.bind_address = bind_address
        self.data_dir = data_dir
        self.token_auth_file = token_auth_file
        self.cert_dir = (
            cert_dir if cert_dir is not None else (data_dir / "pki" if data_dir else None)
        )
        self.extra_sans = tuple(extra_sans)
        self.store = Store(history=history, watch_queue=watch_queue)
        # Who runs the pods, for pods/log and pods/exec (the lab registers its kubelets).
        self.pod_runtime: podstreams.PodRuntime | None = None
        self.registry = Registry()
        self.authenticator = TokenAuthenticator()
        # Node + RBAC (kube-apiserver's --authorization-mode=Node,RBAC); tests may pass another.
        self.authorization = authz.Authorization(self.store)
        self.authorizer: Authorizer = authorizer or self.authorization
        self.handlers = ResourceHandlers(
            store=self.store,
            registry=self.registry,
            authenticator=self.authenticator,
            authorizer=self.authorizer,
            bookmark_interval=bookmark_interval,
        )
        self.handlers.admit = self.authorization.admit
        self.handlers.service_network = self.service_network
        self.handlers.access_reviews = self._access_review
        self.webhooks = Webhooks(self.store, webhook_dial)
        self.proxy_dial: proxy.Dialer = proxy_dial or proxy.default_dial
        self.handlers.webhooks = self.webhooks
        self._persistence: Persistence | None = None
        self._runner: web.AppRunner | None = None
        self._sites: list[web.BaseSite] = []
        self._certs: ServingCerts | None = None
        self._ssl: ssl.SSLContext | None = None
        self._admin_token: str | None = None

    # -- properties -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = self.bind_address if self.bind_address not in ("0.0.0.0", "::", "") else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{self._port}"

    @property
    def ca_pem(self) -> bytes:
        if self._certs is None:
            raise RuntimeError("APIServer not started")
        return self._certs.ca_pem

    @property
    def admin_token(self) -> str:
        if self._admin_token is None:
            raise RuntimeError("APIServer not started")
        return self._admin_token

    @property
    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            raise RuntimeError("APIServer not started")
        return self._ssl

    def kubeconfig(
        self, *, token: str | None = None, user: str = "admin", server: str | None = None
    ) -> str:
        """Kubeconfig text for this server (admin by default)."""
        return render_kubeconfig(
            server=server or self.url,
            ca_pem=self.ca_pem,
            token=token or self.admin_token,
            user=user,
        )

    def write_kubeconfig(self, path: Path, **kwargs: str) -> None:
        write_kubeconfig(path, self.kubeconfig(**kwargs))

    def add_token(
        self,
        token: str,
        *,
        user: str,
        uid: str = "",
        groups: Sequence[str] = (),
        extra: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """Accept another bearer token from now on (not written to the token file)."""
        extras = tuple((k, tuple(v)) for k, v in sorted((extra or {}).items()))
        self.authenticator.add(
            token, Identity(user=user, uid=uid, groups=tuple(groups), extra=extras)
        )

    def ensure_objects(self, objects: Sequence[tuple[tuple[str, str], dict[str, object]]]) -> None:
        """Create or reset objects as the server itself (bootstrap RBAC, the lab's manifest).

        An existing object is replaced unless it is annotated
        ``rbac.authorization.kubernetes.io/autoupdate: "false"``.
        """
        for key, raw in objects:
            rt = self.registry.any_version(*key)
            if rt is None:
                raise ValueError(f"unknown resource {key}")
            obj = copy.deepcopy(dict(raw))
            meta = obj.setdefault("metadata", {})
            assert isinstance(meta, dict)
            ns = str(meta.get("namespace") or "") if rt.namespaced else ""
            old = self.store.get(rt.key, ns, str(meta.get("name", "")))
            if old is None:
                self.handlers.create(rt, obj, ns)
                continue
            annotations = old["metadata"].get("annotations") or {}
            if annotations.get(authz.defaults.AUTOUPDATE) == "false":
                continue
            meta.pop("resourceVersion", None)
            self.handlers.update(rt, obj, old)

    async def _access_review(
        self, request: web.Request, resource: str, namespace: str, identity: Identity
    ) -> web.Response:
        return await access_reviews.handle(
            request, resource, namespace, identity, self.authorization
        )

    # -- life cycle -------------------------------------------------------------------------

    def _load_tokens(self) -> None:
        path = self.token_auth_file
        if path is None and self.data_dir is not None:
            path = self.data_dir / "tokens.csv"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch(mode=0o600)
                path.write_text(format_token_line(new_token(), ADMIN))
        if path is not None:
            fresh = TokenAuthenticator.from_file(path)
            for token, ident in fresh._tokens.items():
                self.authenticator.add(token, ident)
        admin = self.authenticator.first_token_of_group("system:masters")
        if admin is None:
            admin = new_token()
            self.authenticator.add(admin, ADMIN)
        self._admin_token = admin

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._certs = await loop.run_in_executor(
            None, lambda: ensure_certs(self.cert_dir, extra_sans=self.extra_sans)
        )
        self._ssl = _ssl_context(self._certs)
        self._load_tokens()
        if self.data_dir is not None:
            self._persistence = Persistence(self.data_dir)
            rv, objects = self._persistence.load()
            for group, resource, obj in objects:
                self.store.load((group, resource), obj)
            self.store.rv = rv
            self.store.compacted_rv = rv
            self._persistence.start(self.store)
        self.handlers.bootstrap()
        self.ensure_objects(self.authorization.default_objects())
        if self.advertise_address is not None:
            self.ensure_objects(
                services.kubernetes_objects(self.service_network, *self.advertise_address)
            )
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_events())
        app = web.Application(client_max_size=MAX_REQUEST_BODY_BYTES)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.bind_address, self._port, ssl_context=self._ssl, reuse_address=True
        )
        await site.start()
        self._sites.append(site)
        server = getattr(site, "_server", None)
        if self._port == 0 and server is not None and server.sockets:
            self._port = server.sockets[0].getsockname()[1]
        heap.freeze()  # the start-up state stays out of later collections
        log.info("apiserver_started", url=self.url, data_dir=str(self.data_dir or ""))

    async def add_socket(self, sock: socket.socket) -> None:
        """Serve an already listening socket (e.g. one bound inside another netns) too."""
        if self._runner is None:
            raise RuntimeError("APIServer not started")
        site = web.SockSite(self._runner, sock, ssl_context=self._ssl)
        await site.start()
        self._sites.append(site)

    async def _sweep_events(self) -> None:
        while True:
            await asyncio.sleep(60)
            expired = self.handlers.deletions.expire_events(self.event_ttl)
            if expired:
                log.info("apiserver_events_expired", count=expired)

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        self.store.close_watchers()
        self.handlers.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._sites.clear()
        if self._persistence is not None:
            await self._persistence.close()
            self._persistence = None
        log.info("apiserver_stopped", url=self.url)

    async def __aenter__(self) -> APIServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- requests ---------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        response: web.StreamResponse
        try:
            response = await self._dispatch(request)
        except errors.APIError as exc:
            response = json_response(exc.body, status=exc.code)
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as exc:
            log.exception("apiserver_request_failed", method=request.method, path=request.path)
            response = json_response(errors.internal(str(exc)).body, status=500)
        if request.method != "GET" and self._persistence is not None:
            # Nothing is acknowledged before it is durable: wait until everything committed
            # so far (this request's writes included) is synced to the data directory.
            try:
                await self._persistence.wait_durable(self.store.rv)
            except PersistError as exc:
                response = json_response(
                    errors.internal(f"the write could not be persisted: {exc}").body, status=500
                )
        return response

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path in _HEALTH or path.startswith(("/healthz/", "/livez/", "/readyz/")):
            return web.Response(text="ok")
        identity = self.authenticator.authenticate_header(request.headers.get("Authorization"))
        if identity is None:
            raise errors.unauthorized()
        if isinstance(self.authorizer, authz.Authorization):
            identity = self.authorizer.impersonate(identity, request.headers)
        authz.CURRENT_IDENTITY.set(identity)
        proxied = proxy.parse_proxy_path(request.raw_path.partition("?")[0])
        if proxied is not None:
            attrs = authz.resource_attributes(request.method, proxied.target(), {}, path)
            allowed, reason = self.authorizer_decide(identity, attrs)
            if not allowed:
                raise authz.forbidden(identity, attrs, reason)
            return await proxy.forward(self.proxy_dial, self.store, request, proxied)
        target = parse_path(path)
        if not isinstance(target, ResourcePath):
            attrs = authz.non_resource_attributes(request.method, path)
            allowed, reason = self.authorizer_decide(identity, attrs)
            if not allowed:
                raise authz.forbidden(identity, attrs, reason)
        if path == "/version":
            return json_response(discovery.KUBERNETES_VERSION)
        if path == "/":
            return json_response(discovery.root_paths(self.registry))
        if path in ("/api", "/api/"):
            host = request.host or f"127.0.0.1:{self._port}"
            return json_response(discovery.api_versions(host))
        if path in ("/apis", "/apis/"):
            return json_response(discovery.api_group_list(self.registry))
        if path.startswith("/openapi/"):
            return self._openapi(path, request.headers.get("Accept", ""))
        parts = [p for p in path.split("/") if p]
        if len(parts) == 2 and parts[0] == "apis":
            group = discovery.api_group(self.registry, parts[1])
            if group is None:
                raise errors.resource_not_found(path)
            return json_response(group)
        if target is None:
            raise errors.resource_not_found(path)
        if isinstance(target, GroupVersionPath):
            doc = discovery.resource_list(self.registry, target.group, target.version)
            if doc is None:
                raise errors.resource_not_found(path)
            return json_response(doc)
        attrs = authz.resource_attributes(request.method, target, request.query, path)
        streaming = (
            target.group == "" and target.resource == "pods" and target.subresource in _STREAMS
        )
        if streaming and target.subresource == "exec":
            # Opening a command stream is "create pods/exec", also over a WebSocket GET.
            attrs = dataclasses.replace(attrs, verb="create")
        allowed, reason = self.authorizer_decide(identity, attrs)
        if not allowed:
            raise authz.forbidden(identity, attrs, reason)
        if streaming and target.namespace and target.name:
            if request.method != "GET" and target.subresource == "log":
                raise errors.method_not_allowed()
            stream = podstreams.logs if target.subresource == "log" else podstreams.exec_
            return await stream(
                self.pod_runtime, self.store, request, target.namespace, target.name
            )
        return await self.handlers.handle(request, target, identity)

    def authorizer_decide(self, identity: Identity, attrs: RequestAttributes) -> tuple[bool, str]:
        if isinstance(self.authorizer, authz.Authorization):
            return self.authorizer.decide(identity, attrs)
        return self.authorizer.authorize(identity, attrs), ""

    def _openapi(self, path: str, accept: str = "") -> web.Response:
        if path.rstrip("/") == "/openapi/v2":
            v2 = openapi.swagger_v2(self.registry, discovery.KUBERNETES_VERSION["gitVersion"])
            if "protobuf" in accept:
                body = openapi_pb.encode_document(v2)
                return web.Response(body=body, content_type=OPENAPI_V2_PROTOBUF)
            return web.Response(body=orjson.dumps(v2), content_type="application/json")
        if path.rstrip("/") == "/openapi/v3":
            return json_response(discovery.openapi_v3_index(self.registry))
        if path.startswith("/openapi/v3/"):
            rest = path[len("/openapi/v3/") :].strip("/").split("/")
            doc = None
            if len(rest) == 2 and rest[0] == "api":
                doc = discovery.openapi_v3_doc(self.registry, "", rest[1])
            elif len(rest) == 3 and rest[0] == "apis":
                doc = discovery.openapi_v3_doc(self.registry, rest[1], rest[2])
            if doc is not None:
                return web.Response(body=orjson.dumps(doc), content_type="application/json")
        raise errors.resource_not_found(path)


async def run_forever(server: APIServer) -> None:
    """Start ``server`` and keep it up until cancelled (SIGTERM/SIGINT in the CLI)."""
    await server.start()
    try:
        await asyncio.Event().wait()
    finally:
        with contextlib.suppress(Exception):
            await server.stop()
