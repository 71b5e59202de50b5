"""The agent's operator endpoints: ``/livez``, ``/readyz`` and ``/metrics`` over HTTPS.

Served on the node's address at ``apiPort`` (10350, as Antrea's agent), next to the plain-HTTP
loopback API that antctl uses inside the pod. The certificate is self-signed, made at every
start for the node's address, its name and localhost (Prometheus scrapes it with
``insecure_skip_verify`` or by pinning, as for Antrea's agent).

Who may call what, as a Kubernetes component does it:

- ``/livez`` and ``/readyz`` need no credentials (kubelet's probes carry none): they are the
  always-allowed paths (kube components' ``--authorization-always-allow-paths``), and tell only
  ok / not ok with the names of the checks.
- ``/metrics`` needs a bearer token, authenticated with a TokenReview and authorized with a
  SubjectAccessReview for the non-resource URL (``get`` on ``/metrics``), both sent to the
  Kubernetes API. A ServiceAccount bound to a ClusterRole with
  ``nonResourceURLs: ["/metrics"], verbs: ["get"]`` can scrape; anyone else gets 401/403.
  Reviews are cached briefly (positive 10 s, negative 2 s), so a scrape every few seconds costs
  one pair of reviews per token per ten seconds.
- ``/agentinfo`` (antctl from outside the node, through the Kubernetes API's ``pods/proxy``):
  the same, ``get`` on ``/agentinfo``. The API server does not forward the caller's
  ``Authorization``, so the token may come in ``X-Antrea-Authorization`` instead.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence

import structlog
from aiohttp import web

from antrea.apis.controlplane.names import PROXIED_AUTHORIZATION_HEADER
from antrea.k8s.resources import KubeError
from antrea.k8s.reviews import AccessReviewer, Identity, TokenAuthenticator
from antrea.util import pki
from antrea.util.health import Check, report

log = structlog.get_logger(__name__)

ALWAYS_ALLOWED = ("/livez", "/readyz")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SecureAPI:
    """The HTTPS listener: health checks for kubelet, token-protected metrics for Prometheus."""

    def __init__(
        self,
        *,
        livez: Sequence[Check],
        readyz: Sequence[Check],
        metrics: Callable[[web.Request], Awaitable[web.StreamResponse]],
        authenticator: TokenAuthenticator,
        reviewer: AccessReviewer,
        operator: Mapping[str, Handler] | None = None,
    ) -> None:
        """``operator``: GET paths for antctl (``/agentinfo``), each authorized like
        ``/metrics`` (``get`` on the path)."""
        self.operator = dict(operator or {})
        self.livez_checks = list(livez)
        self.readyz_checks = list(readyz)
        self.metrics_handler = metrics
        self.authenticator = authenticator
        self.reviewer = reviewer
        self._runner: web.AppRunner | None = None

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/livez", self.livez)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        for path, handler in self.operator.items():
            app.router.add_get(path, self._operator(path, handler))
        return app

    def _operator(self, path: str, handler: Handler) -> Handler:
        async def serve(request: web.Request) -> web.StreamResponse:
            await self.authorize(request, "get", path)
            return await handler(request)

        return serve

    async def livez(self, request: web.Request) -> web.Response:
        return report(self.livez_checks, "verbose" in request.query)

    async def readyz(self, request: web.Request) -> web.Response:
        return report(self.readyz_checks, "verbose" in request.query)

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        await self.authorize(request, "get", "/metrics")
        return await self.metrics_handler(request)

    async def authorize(self, request: web.Request, verb: str, path: str) -> Identity:
        # Through the Kubernetes API's pods/proxy (antctl --node) the caller's token comes in
        # its own header: the API server does not forward Authorization.
        header = request.headers.get("Authorization", "") or request.headers.get(
            PROXIED_AUTHORIZATION_HEADER, ""
        )
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not token:
            raise web.HTTPUnauthorized(text="Unauthorized: bearer token required\n")
        try:
            ident = await self.authenticator.authenticate(token)
        except (KubeError, OSError, TimeoutError) as exc:
            log.warning("token_review_failed", error=str(exc))
            raise web.HTTPServiceUnavailable(text="cannot review the token\n") from exc
        if ident is None:
            raise web.HTTPUnauthorized(text="Unauthorized: invalid bearer token\n")
        try:
            allowed = await self.reviewer.allowed(ident, verb, path)
        except (KubeError, OSError, TimeoutError) as exc:
            log.warning("subject_access_review_failed", error=str(exc))
            raise web.HTTPServiceUnavailable(text="cannot review the access\n") from exc
        if not allowed:
            raise web.HTTPForbidden(
                text=f'Forbidden: user "{ident.user}" may not {verb} path "{path}"\n'
            )
        return ident

    async def start(self, host: str, port: int, hosts: Sequence[str]) -> int:
        """Listen with a fresh self-signed certificate for ``hosts``; returns the bound port."""
        ssl_ctx = await asyncio.to_thread(self_signed_context, list(hosts))
        self._runner = web.AppRunner(self.build_app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_ctx, reuse_address=True)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        bound = int(sockets[0].getsockname()[1]) if sockets else port
        log.info("agent_secure_api_listening", host=host, port=bound)
        return bound

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def self_signed_context(hosts: list[str]) -> ssl.SSLContext:
    """A server TLS context with a new key and certificate for ``hosts`` (issuer: a throwaway CA
    made for it, whose key is never kept)."""
    ca_cert, ca_key = pki.new_ca("antrea-agent-ca", 365)
    cert, key = pki.issue_serving(
        ca_cert, ca_key, pki.general_names(hosts), common_name="antrea-agent", days=365
    )
    return pki.server_ssl_context(pki.cert_pem(cert) + pki.cert_pem(ca_cert), pki.key_pem(key))
