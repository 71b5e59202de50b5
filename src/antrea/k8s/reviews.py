"""Who is calling: bearer tokens checked by TokenReview, permissions by SubjectAccessReview.

Both Antrea roles serve HTTPS to callers they do not know (the controller to agents and antctl,
the agent's operator endpoints to Prometheus and kubelet) and delegate, as Kubernetes components
do, to the Kubernetes API:

- authentication (``authentication.k8s.io/v1`` TokenReview, `TokenAuthenticator`): results are
  cached briefly (positive and negative) so that a burst of reconnecting agents costs one review
  per token, and concurrent lookups of one token share a single request;
- authorization (``authorization.k8s.io/v1`` SubjectAccessReview, `AccessReviewer`): may this
  identity do this verb on this resource or non-resource URL, answered from RBAC and cached.

The controller's own node rule (a node identity, ``system:node:<n>`` or a ServiceAccount token
bound to a pod on node ``<n>``, may watch and report status only for node ``<n>``) is
`Identity.may_act_for_node`; operator requests (antctl) are allowed for ``system:masters`` and
otherwise by a SubjectAccessReview (``controller/server.py``, the ``antctl`` ClusterRole in
deploy/antrea.yml).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog

from antrea.k8s.resources import KubeError, KubeResources

log = structlog.get_logger(__name__)

K = TypeVar("K")
V = TypeVar("V")

NODE_USER_PREFIX = "system:node:"
SERVICEACCOUNT_PREFIX = "system:serviceaccount:"
NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"
ADMIN_GROUP = "system:masters"
TOKENREVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"


@dataclass(frozen=True)
class Identity:
    user: str
    groups: frozenset[str] = frozenset()
    node_claim: str | None = None  # bound ServiceAccount token: the node of the pod it is for

    @property
    def node(self) -> str | None:
        """The node this identity speaks for: ``system:node:<n>`` (the lab's node tokens), or a
        ServiceAccount token bound to a pod on node ``<n>`` (in-cluster agents: TokenReview's
        ``extra["authentication.kubernetes.io/node-name"]``)."""
        if self.user.startswith(NODE_USER_PREFIX):
            return self.user[len(NODE_USER_PREFIX) :]
        if self.user.startswith(SERVICEACCOUNT_PREFIX) and self.node_claim:
            return self.node_claim
        return None

    @property
    def is_admin(self) -> bool:
        return ADMIN_GROUP in self.groups

    def may_act_for_node(self, node: str) -> bool:
        return self.is_admin or self.node == node


class ReviewCache(Generic[K, V]):
    """Review answers kept briefly: `ttl` seconds for a yes, `negative_ttl` for a no (so a
    revoked permission or token is seen soon, a burst of callers costs one review); cleared
    whole when it reaches `max_entries`."""

    def __init__(
        self,
        *,
        ttl: float,
        negative_ttl: float,
        clock: Callable[[], float],
        max_entries: int,
    ) -> None:
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.clock = clock
        self.max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> tuple[bool, V | None]:
        """(True, answer) while a cached answer is fresh, else (False, None)."""
        hit = self._entries.get(key)
        if hit is not None and hit[0] > self.clock():
            return True, hit[1]
        return False, None

    def put(self, key: K, value: V) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        ttl = self.ttl if value else self.negative_ttl
        self._entries[key] = (self.clock() + ttl, value)


class TokenAuthenticator:
    """Bearer token -> `Identity` (None when the token is not valid)."""

    def __init__(
        self,
        kube: KubeResources,
        *,
        ttl: float = 10.0,
        negative_ttl: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 10_000,
    ) -> None:
        self.kube = kube
        self._cache: ReviewCache[str, Identity | None] = ReviewCache(
            ttl=ttl, negative_ttl=negative_ttl, clock=clock, max_entries=max_entries
        )
        self._inflight: dict[str, asyncio.Future[Identity | None]] = {}
        self.reviews = 0

    async def authenticate(self, token: str) -> Identity | None:
        fresh, cached = self._cache.get(token)
        if fresh:
            return cached
        fut = self._inflight.get(token)
        if fut is not None:
            return await asyncio.shield(fut)
        fut = asyncio.get_running_loop().create_future()
        self._inflight[token] = fut
        try:
            ident = await self._review(token)
            fut.set_result(ident)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._inflight[token]
        self._cache.put(token, ident)
        return ident

    async def _review(self, token: str) -> Identity | None:
        self.reviews += 1
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        }
        try:
            out = await self.kube.create(TOKENREVIEWS, body)
        except KubeError as exc:
            if exc.status in (400, 401, 403):
                return None
            raise
        status = out.get("status") or {}
        if not status.get("authenticated"):
            return None
        user = status.get("user") or {}
        claims = (user.get("extra") or {}).get(NODE_NAME_EXTRA) or []
        return Identity(
            user.get("username", ""),
            frozenset(user.get("groups") or ()),
            node_claim=str(claims[0]) if len(claims) == 1 else None,
        )


SUBJECTACCESSREVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
_AccessKey = tuple[str, frozenset[str], str, tuple[tuple[str, str], ...]]


class AccessReviewer:
    """SubjectAccessReview client: may `identity` do `verb` on the non-resource `path`?"""

    def __init__(
        self,
        kube: KubeResources,
        *,
        ttl: float = 10.0,
        negative_ttl: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 10_000,
    ) -> None:
        self.kube = kube
        self._cache: ReviewCache[_AccessKey, bool] = ReviewCache(
            ttl=ttl, negative_ttl=negative_ttl, clock=clock, max_entries=max_entries
        )
        self.reviews = 0

    async def allowed(self, identity: Identity, verb: str, path: str) -> bool:
        return await self._review(identity, "nonResourceAttributes", {"path": path, "verb": verb})

    async def allowed_resource(
        self,
        identity: Identity,
        verb: str,
        group: str,
        resource: str,
        name: str = "",
        *,
        namespace: str = "",
    ) -> bool:
        """May `identity` do `verb` on `resource` of API `group` (antctl on the controller:
        ``controlplane.antrea.io``, ``system.antrea.io``, ``stats.antrea.io``), in `namespace`
        for a namespaced request (a Role there may allow it)?"""
        attrs = {"verb": verb, "group": group, "resource": resource}
        if name:
            attrs["name"] = name
        if namespace:
            attrs["namespace"] = namespace
        return await self._review(identity, "resourceAttributes", attrs)

    async def _review(self, identity: Identity, field: str, attrs: dict[str, str]) -> bool:
        key = (identity.user, identity.groups, field, tuple(sorted(attrs.items())))
        fresh, cached = self._cache.get(key)
        if fresh:
            return bool(cached)
        self.reviews += 1
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {"user": identity.user, "groups": sorted(identity.groups), field: attrs},
        }
        out = await self.kube.create(SUBJECTACCESSREVIEWS, body)
        allowed = bool((out.get("status") or {}).get("allowed"))
        self._cache.put(key, allowed)
        return allowed
