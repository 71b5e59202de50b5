"""The resource verbs: get, list, watch, create, update, patch, delete, deletecollection.

One `ResourceHandlers` instance serves every resource generically; what differs per kind
lives in `strategy` (defaults, status split, generation), `crd` (CustomResourceDefinitions)
and the validation/patch modules. All store mutations happen synchronously between awaits,
so a request either commits completely or not at all.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from aiohttp import web

from antrea.errors import AntreaError
from antrea.k8s.labels import parse_label_selector
from antrea.testbed.apiserver import (
    crd,
    crschema,
    decoding,
    errors,
    heap,
    query,
    reviews,
    services,
    strategy,
    typecheck,
)
from antrea.testbed.apiserver.auth import (
    AllowAuthenticated,
    Authorizer,
    Identity,
    TokenAuthenticator,
)
from antrea.testbed.apiserver.deletion import Deletions
from antrea.testbed.apiserver.limits import read_body
from antrea.testbed.apiserver.patch import PatchError, apply_patch, strategic_merge_supported
from antrea.testbed.apiserver.resources import Registry, ResourceType
from antrea.testbed.apiserver.routing import ResourcePath
from antrea.testbed.apiserver.selectors import SelectorError, parse_field_selector
from antrea.testbed.apiserver.store import Predicate, Store, name_of, namespace_of
from antrea.testbed.apiserver.tables import to_table
from antrea.testbed.apiserver.validation import field_errors_to_status, validate
from antrea.testbed.apiserver.watch import serve_watch, versioned
from antrea.testbed.apiserver.webhooks import Attributes, Webhooks
from antrea.testbed.apiserver.wire import (
    DECODE_AS,
    decode_yaml,
    json_response,
    read_object,
    read_value,
)

log = structlog.get_logger(__name__)

JSON = dict[str, Any]
NS_KEY = ("", "namespaces")
POD_KEY = ("", "pods")
CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")
SERVICES_KEY = ("", "services")
APPLY_PATCH = "application/apply-patch+yaml"
SMP = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"
NAMESPACE_MISMATCH = (
    "the namespace of the provided object does not match the namespace sent on the request"
)
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
IDENTITY = web.RequestKey("antrea.identity", Identity)
ADMISSION_RETRIES = 5


class _Raced(AntreaError):
    """The stored object changed while admission webhooks were deciding on an update."""


def _field_warnings(
    request: web.Request, rt: ResourceType, obj: JSON, *, patch: bool = False
) -> list[str]:
    """Decode checks (`decoding.check_body`) under the request's ``fieldValidation``."""
    return decoding.check_body(rt, obj, query.field_validation(request), patch=patch)


def _apply_body(request: web.Request, body: bytes) -> JSON:
    """The configuration of a server-side apply request (YAML or JSON)."""
    if not request.query.get("fieldManager"):
        raise errors.bad_request("PATCH /apply requests require fieldManager")
    obj = decode_yaml(body)
    if not isinstance(obj, dict) or not isinstance(obj.setdefault("metadata", {}), dict):
        raise errors.bad_request("the applied configuration must be an object with metadata")
    return obj


def _wants_table(request: web.Request) -> bool:
    return "as=Table" in request.headers.get("Accept", "")


def _dry_run(request: web.Request) -> bool:
    return query.dry_run(request)


def _encode_continue(ns: str, name: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([ns, name])).decode()


def _decode_continue(token: str) -> tuple[str, str]:
    try:
        ns, name = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        return str(ns), str(name)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise errors.bad_request("continue key is not valid") from None


class ResourceHandlers:
    def __init__(
        self,
        *,
        store: Store,
        registry: Registry,
        authenticator: TokenAuthenticator,
        authorizer: Authorizer | None = None,
        bookmark_interval: float = 10.0,
    ) -> None:
        self.authorizer: Authorizer = authorizer or AllowAuthenticated()
        self.store = store
        self.registry = registry
        self.authenticator = authenticator
        self.bookmark_interval = bookmark_interval
        # --service-cluster-ip-range / --service-node-port-range (set by the server).
        self.service_network = services.ServiceNetwork.parse()
        self.deletions = Deletions(store=store, registry=registry)
        # Authorization's hooks (`antrea.testbed.apiserver.authz`): checks on writes that need the
        # object (RBAC escalation, node restriction), and the access reviews.
        self.admit: Callable[[str, str, JSON, JSON | None], None] | None = None
        self.access_reviews: (
            Callable[[web.Request, str, str, Identity], Awaitable[web.Response]] | None
        ) = None
        # Dynamic admission (admission webhooks); None: no webhook is ever called.
        self.webhooks: Webhooks | None = None

    # -- life cycle -------------------------------------------------------------------------

    def bootstrap(self) -> None:
        """After loading: serve stored CRDs, create default namespaces, re-arm pod timers."""
        for obj in self.store.list(CRD_KEY):
            self.registry.register_crd(obj)
        ns_rt = self._rt(NS_KEY)
        for name in DEFAULT_NAMESPACES:
            if self.store.get(NS_KEY, "", name) is None:
                obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
                self.store.put(NS_KEY, strategy.prepare_create(ns_rt, obj), old=None)
        for pod in self.store.list(POD_KEY):
            if pod["metadata"].get("deletionTimestamp"):
                self.deletions.arm_pod_timer(pod)

    def close(self) -> None:
        self.deletions.close()

    def _rt(self, key: tuple[str, str]) -> ResourceType:
        rt = self.registry.any_version(*key)
        if rt is None:
            raise errors.internal(f"unknown resource {key}")
        return rt

    # -- dispatch ---------------------------------------------------------------------------

    async def handle(
        self, request: web.Request, target: ResourcePath, identity: Identity
    ) -> web.StreamResponse:
        rt = self.registry.get(target.group, target.version, target.resource)
        if rt is None:
            raise errors.resource_not_found(request.path)
        if target.namespace is not None and not rt.namespaced:
            raise errors.resource_not_found(request.path)
        ns = target.namespace if rt.namespaced else ""
        method = request.method
        request[IDENTITY] = identity
        if rt.virtual:
            if method != "POST" or target.name is not None:
                raise errors.method_not_allowed()
            # Review bodies are decoded like any other: `wire.read_object` type-checks them.
            model = typecheck.model_for(rt.group, rt.version, rt.kind)
            request[DECODE_AS] = (rt.kind, rt.version, model)
            if rt.resource == "selfsubjectreviews":
                return await reviews.self_subject_review(request, identity)
            if rt.group == "authorization.k8s.io" and self.access_reviews is not None:
                return await self.access_reviews(request, rt.resource, ns or "", identity)
            if rt.resource == "selfsubjectaccessreviews":
                return await reviews.self_access_review(request, identity, self.authorizer)
            return await reviews.token_review(request, self.authenticator)
        sub = target.subresource
        if sub and sub not in ("status", "binding", "finalize"):
            raise errors.resource_not_found(request.path)
        if sub == "status" and not rt.status_subresource:
            raise errors.resource_not_found(request.path)
        if sub == "binding" and rt.key != POD_KEY:
            raise errors.resource_not_found(request.path)
        if sub == "finalize" and rt.key != NS_KEY:
            raise errors.resource_not_found(request.path)
        collection_delete = not sub and method == "DELETE" and target.name is None
        if collection_delete and "deletecollection" not in rt.verbs:
            raise errors.method_not_allowed()

        if method == "GET":
            watch = target.watch or query.flag(request, "watch")
            if target.name is None or watch:
                if rt.namespaced and target.name is not None and ns is None:
                    raise errors.resource_not_found(request.path)
                return await self._list_or_watch(request, rt, target.namespace, target.name, watch)
            return self._get(request, rt, ns or "", target.name)
        if target.watch:
            raise errors.method_not_allowed()
        if method == "POST":
            if sub == "binding" and target.name is not None:
                return await self._bind(request, rt, ns or "", target.name)
            if target.name is not None:
                raise errors.method_not_allowed()
            if rt.namespaced and target.namespace is None:
                raise errors.method_not_allowed()
            return await self._create(request, rt, ns or "")
        if target.name is None:
            if method == "DELETE":
                return await self._delete_collection(request, rt, target.namespace)
            raise errors.method_not_allowed()
        if rt.namespaced and target.namespace is None:
            raise errors.resource_not_found(request.path)
        if method == "PUT":
            return await self._update(request, rt, ns or "", target.name, sub)
        if method == "PATCH":
            return await self._patch(request, rt, ns or "", target.name, sub)
        if method == "DELETE":
            if sub:
                raise errors.method_not_allowed()
            return await self._delete(request, rt, ns or "", target.name)
        raise errors.method_not_allowed()

    # -- reads ------------------------------------------------------------------------------

    def _get(self, request: web.Request, rt: ResourceType, ns: str, name: str) -> web.Response:
        obj = self.store.get(rt.key, ns, name)
        if obj is None:
            raise errors.not_found(group=rt.group, resource=rt.resource, name=name)
        if _wants_table(request):
            return json_response(
                to_table(
                    rt,
                    [versioned(rt, obj)],
                    resource_version=obj["metadata"]["resourceVersion"],
                    include_object=request.query.get("includeObject", "Metadata"),
                )
            )
        return json_response(versioned(rt, obj))

    def _predicate(self, request: web.Request, rt: ResourceType) -> Predicate | None:

        label_s = request.query.get("labelSelector", "")
        field_s = request.query.get("fieldSelector", "")
        try:
            labels = parse_label_selector(label_s) if label_s else None
            fields = parse_field_selector(field_s, rt.kind) if field_s else None
        except SelectorError as exc:
            raise errors.bad_request(str(exc)) from None
        if labels is not None and labels.empty:
            labels = None
        if fields is not None and fields.empty:
            fields = None
        if labels is None and fields is None:
            return None
        if fields is None:
            assert labels is not None
            lmatch = labels.matches
            return lambda obj: lmatch(obj["metadata"].get("labels") or {})
        fmatch = fields.matches
        if labels is None:
            return fmatch
        lmatch2 = labels.matches
        return lambda obj: fmatch(obj) and lmatch2(obj["metadata"].get("labels") or {})

    async def _list_or_watch(
        self,
        request: web.Request,
        rt: ResourceType,
        namespace: str | None,
        name: str | None,
        watch: bool,
    ) -> web.StreamResponse:
        predicate = self._predicate(request, rt)
        if not rt.namespaced:
            namespace = None
        if watch:
            return await serve_watch(
                request,
                store=self.store,
                rt=rt,
                namespace=namespace,
                name=name,
                predicate=predicate,
                table=_wants_table(request),
                bookmark_interval=self.bookmark_interval,
            )
        items = self.store.list(rt.key, namespace)
        if predicate is not None:
            items = [o for o in items if predicate(o)]
        list_meta: JSON = {"resourceVersion": str(self.store.rv)}
        token = request.query.get("continue")
        if token:
            after = _decode_continue(token)
            items = [o for o in items if (namespace_of(o), name_of(o)) > after]
        limit = query.int64(request, "limit") or 0
        if limit > 0 and len(items) > limit:
            rest = len(items) - limit
            items = items[:limit]
            last = items[-1]
            list_meta["continue"] = _encode_continue(namespace_of(last), name_of(last))
            list_meta["remainingItemCount"] = rest
        if _wants_table(request):
            table = to_table(
                rt,
                [versioned(rt, o) for o in items],
                resource_version=list_meta["resourceVersion"],
                include_object=request.query.get("includeObject", "Metadata"),
                list_meta=list_meta,
            )
            return json_response(table)
        return json_response(
            {
                "kind": f"{rt.kind}List",
                "apiVersion": rt.group_version,
                "metadata": list_meta,
                "items": [versioned(rt, o) for o in items],
            }
        )

    # -- create -----------------------------------------------------------------------------

    def _validate(self, rt: ResourceType, obj: JSON, old: JSON | None) -> None:

        if self.admit is not None:
            self.admit(rt.group, rt.resource, obj, old)
        errs = validate(rt.group, rt.kind, obj, old)
        if rt.custom and rt.schema is not None:
            errs.extend(crschema.validate(rt.schema, obj))
        if errs:
            raise errors.APIError(
                field_errors_to_status(
                    rt.kind, obj["metadata"].get("name", ""), errs, group=rt.group
                )
            )

    def _check_namespace_open(self, rt: ResourceType, ns: str, name: str) -> None:
        ns_obj = self.store.get(NS_KEY, "", ns)
        if ns_obj is None:
            raise errors.not_found(group="", resource="namespaces", name=ns)
        if ns_obj["metadata"].get("deletionTimestamp"):
            raise errors.forbidden(
                f'{errors.qualified(rt.resource, rt.group)} "{name}" is forbidden: '
                "unable to create "
                f"new content in namespace {ns} because it is being terminated",
                group=rt.group,
                resource=rt.resource,
                name=name,
            )

    def _normalize_body(self, rt: ResourceType, obj: JSON, ns: str) -> JSON:
        meta = obj["metadata"]
        body_ns = meta.get("namespace")
        if rt.namespaced:
            if body_ns and body_ns != ns:
                raise errors.bad_request(NAMESPACE_MISMATCH)
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        kind = obj.get("kind")
        if kind and kind != rt.kind:
            raise errors.bad_request(
                f"the kind of the provided object ({kind}) does not match the resource ({rt.kind})"
            )
        obj["kind"] = rt.kind
        obj["apiVersion"] = rt.group_version
        return obj

    async def _create(self, request: web.Request, rt: ResourceType, ns: str) -> web.Response:
        with heap.large_body(request.content_length):
            obj = self._normalize_body(rt, await read_object(request), ns)
            warnings = _field_warnings(request, rt, obj)
            created = await self._admitted_create(request, rt, obj, ns)
            return json_response(created, status=201, warnings=warnings)

    # -- admission --------------------------------------------------------------------------

    def _hooked(self) -> bool:
        return self.webhooks is not None and self.webhooks.configured()

    def _attrs(
        self, request: web.Request, op: str, rt: ResourceType, *, sub: str, ns: str, name: str
    ) -> Attributes:
        return Attributes(
            operation=op,
            rt=rt,
            subresource=sub,
            namespace=ns,
            name=name,
            identity=request.get(IDENTITY),
            dry_run=_dry_run(request),
        )

    async def _admitted_create(
        self, request: web.Request, rt: ResourceType, obj: JSON, ns: str
    ) -> JSON:
        """Create through the admission webhooks: mutate, prepare, validate, commit."""
        dry_run = _dry_run(request)
        if self.webhooks is None or not self._hooked():
            return self.create(rt, obj, ns, dry_run=dry_run)
        attrs = self._attrs(
            request, "CREATE", rt, sub="", ns=ns, name=obj["metadata"].get("name") or ""
        )
        obj = self._normalize_body(rt, await self.webhooks.mutate(attrs, obj, None), ns)
        prepared = self.prepare_create(rt, obj, ns)
        attrs = self._attrs(request, "CREATE", rt, sub="", ns=ns, name=prepared["metadata"]["name"])
        await self.webhooks.validate(attrs, prepared, None)
        return self.commit_create(rt, prepared, ns, dry_run=dry_run)

    async def _admitted_update(
        self,
        request: web.Request,
        rt: ResourceType,
        new: JSON,
        old: JSON,
        *,
        sub: str,
    ) -> tuple[JSON, bool]:
        """Update through the admission webhooks; raises `_Raced` if ``old`` was replaced."""
        dry_run = _dry_run(request)
        if self.webhooks is None or not self._hooked():
            return self.update(rt, new, old, sub=sub, dry_run=dry_run)
        meta = old["metadata"]
        ns, name = meta.get("namespace") or "", meta["name"]
        attrs = self._attrs(request, "UPDATE", rt, sub=sub, ns=ns, name=name)
        new = self._normalize_body(rt, await self.webhooks.mutate(attrs, new, old), ns)
        new["metadata"]["name"] = name
        prepared = self.prepare_update(rt, new, old, sub=sub)
        if strategy.unchanged(prepared, old):
            return old, False
        await self.webhooks.validate(attrs, prepared, old)
        if self.store.get(rt.key, ns, name) is not old:
            raise _Raced()
        return self.commit_update(rt, prepared, old, dry_run=dry_run)

    async def _admit_delete(self, request: web.Request, rt: ResourceType, obj: JSON) -> None:
        if self.webhooks is None or not self._hooked():
            return
        meta = obj["metadata"]
        attrs = self._attrs(
            request, "DELETE", rt, sub="", ns=meta.get("namespace") or "", name=meta["name"]
        )
        await self.webhooks.validate(attrs, None, obj)

    # -- create -----------------------------------------------------------------------------

    def create(self, rt: ResourceType, obj: JSON, ns: str, *, dry_run: bool = False) -> JSON:
        return self.commit_create(rt, self.prepare_create(rt, obj, ns), ns, dry_run=dry_run)

    def prepare_create(self, rt: ResourceType, obj: JSON, ns: str) -> JSON:
        """The object as it would be created (defaults, checks, validation), nothing stored."""
        strategy.check_shape(rt, obj)
        meta = obj["metadata"]
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if prefix:
                candidate = strategy.generate_name(prefix)
                for _ in range(8):
                    candidate = strategy.generate_name(prefix)
                    if self.store.get(rt.key, ns, candidate) is None:
                        break
                meta["name"] = candidate
            else:
                raise errors.invalid(
                    group=rt.group,
                    kind=rt.kind,
                    name="",
                    message=f'{rt.kind} "" is invalid: metadata.name: Required value: name or '
                    "generateName is required",
                    causes=[
                        {
                            "reason": "FieldValueRequired",
                            "message": "Required value: name or generateName is required",
                            "field": "metadata.name",
                        }
                    ],
                )
        if rt.custom and rt.schema is not None:
            obj = crschema.prune_and_default(rt.schema, obj)
        obj = strategy.prepare_create(rt, obj)
        if rt.key == CRD_KEY:
            crd.check_crd(obj)
            obj["status"] = crd.crd_status(obj, None, strategy.now_rfc3339())
        self._validate(rt, obj, None)
        return obj

    def commit_create(self, rt: ResourceType, obj: JSON, ns: str, *, dry_run: bool = False) -> JSON:
        name = obj["metadata"]["name"]
        if rt.namespaced:
            self._check_namespace_open(rt, ns, name)
        if self.store.get(rt.key, ns, name) is not None:
            raise errors.already_exists(group=rt.group, resource=rt.resource, name=name)
        if rt.key == SERVICES_KEY:
            self._allocate_service(obj, None)
        if dry_run:
            return obj
        self.store.put(rt.key, obj, old=None)
        if rt.key == CRD_KEY:
            self.registry.register_crd(obj)
        return obj

    def _allocate_service(self, obj: JSON, old: JSON | None) -> None:
        others = [
            s
            for s in self.store.list(SERVICES_KEY)
            if old is None or s["metadata"].get("uid") != old["metadata"].get("uid")
        ]
        ips, ports = services.used_addresses(others)
        services.allocate(obj, self.service_network, ips, ports, old=old)

    # -- update / patch ---------------------------------------------------------------------

    async def _update(
        self, request: web.Request, rt: ResourceType, ns: str, name: str, sub: str
    ) -> web.Response:
        with heap.large_body(request.content_length):
            return await self._update_body(request, rt, ns, name, sub)

    async def _update_body(
        self, request: web.Request, rt: ResourceType, ns: str, name: str, sub: str
    ) -> web.Response:
        obj = self._normalize_body(rt, await read_object(request), ns)
        warnings = _field_warnings(request, rt, obj)
        body_name = obj["metadata"].get("name")
        if body_name and body_name != name:
            raise errors.bad_request(
                f"the name of the object ({body_name}) does not match the name on the URL ({name})"
            )
        obj["metadata"]["name"] = name
        if sub == "finalize":
            sub = ""
        for _ in range(ADMISSION_RETRIES):
            old = self.store.get(rt.key, ns, name)
            if old is None:
                if rt.create_on_update and not sub:
                    created_obj = await self._admitted_create(request, rt, obj, ns)
                    return json_response(created_obj, status=201, warnings=warnings)
                raise errors.not_found(group=rt.group, resource=rt.resource, name=name)
            try:
                result, created = await self._admitted_update(
                    request, rt, copy.deepcopy(obj), old, sub=sub
                )
                break
            except _Raced:
                continue
        else:
            raise errors.conflict(group=rt.group, resource=rt.resource, name=name)
        return json_response(
            versioned(rt, result), status=201 if created else 200, warnings=warnings
        )

    def update(
        self, rt: ResourceType, new: JSON, old: JSON, *, sub: str = "", dry_run: bool = False
    ) -> tuple[JSON, bool]:
        """Optimistic-concurrency update of ``old`` with the client's ``new`` (a private dict)."""
        return self.commit_update(
            rt, self.prepare_update(rt, new, old, sub=sub), old, dry_run=dry_run
        )

    def prepare_update(self, rt: ResourceType, new: JSON, old: JSON, *, sub: str = "") -> JSON:
        """``new`` as it would replace ``old`` (checks and validation done), nothing stored."""
        strategy.check_shape(rt, new)
        name = old["metadata"]["name"]
        wanted_rv = new["metadata"].get("resourceVersion")
        if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(group=rt.group, resource=rt.resource, name=name)
        if rt.custom and rt.schema is not None:
            new = crschema.prune_and_default(rt.schema, new)
        new = strategy.prepare_update(rt, new, old, subresource=sub)
        if rt.key == SERVICES_KEY and sub != "status":
            self._allocate_service(new, old)
        if rt.key == CRD_KEY and sub != "status":
            crd.check_crd(new)
            new["status"] = crd.crd_status(new, old.get("status"), strategy.now_rfc3339())
        self._validate(rt, new, old)
        return new

    def commit_update(
        self, rt: ResourceType, new: JSON, old: JSON, *, dry_run: bool = False
    ) -> tuple[JSON, bool]:
        if strategy.unchanged(new, old):
            return old, False
        if dry_run:
            return new, False
        meta = new["metadata"]
        finished = meta.get("deletionTimestamp") and not meta.get("finalizers")
        if finished and not self.deletions.timer_pending(rt, meta["uid"]):
            self.deletions.remove(rt, new)
            return new, False
        self.store.put(rt.key, new, old=old)
        if rt.key == CRD_KEY:
            self.registry.register_crd(new)
        return new, False

    async def _patch(
        self, request: web.Request, rt: ResourceType, ns: str, name: str, sub: str
    ) -> web.Response:
        # Read the body before looking at the stored object: from here to the store write
        # nothing awaits (unless admission webhooks are called; then a write that slipped in
        # meanwhile makes the patch start over from the new object, as kube-apiserver does).
        body = await read_body(request)
        for _ in range(ADMISSION_RETRIES):
            try:
                return await self._patch_once(request, rt, ns, name, sub=sub, body=body)
            except _Raced:
                continue
        raise errors.conflict(group=rt.group, resource=rt.resource, name=name)

    async def _patch_once(
        self, request: web.Request, rt: ResourceType, ns: str, name: str, *, sub: str, body: bytes
    ) -> web.Response:
        content_type = request.content_type
        old = self.store.get(rt.key, ns, name)
        if content_type == APPLY_PATCH:
            applied = _apply_body(request, body)
            if old is None:
                if sub:
                    raise errors.not_found(group=rt.group, resource=rt.resource, name=name)
                obj = self._normalize_body(rt, applied, ns)
                if obj["metadata"].setdefault("name", name) != name:
                    raise errors.bad_request(
                        f"the name of the object ({obj['metadata']['name']}) does not match the "
                        f"name on the URL ({name})"
                    )
                warnings = _field_warnings(request, rt, obj)
                created = await self._admitted_create(request, rt, obj, ns)
                return json_response(versioned(rt, created), status=201, warnings=warnings)
            # Approximation without managedFields: merge the applied configuration into the
            # live object the way a strategic merge patch (built-in kinds) or JSON merge
            # patch (custom resources) does; fields dropped from it are not removed.
            body = orjson.dumps(applied)
            content_type = SMP if strategic_merge_supported(rt.kind) else MERGE_PATCH
        if old is None:
            raise errors.not_found(group=rt.group, resource=rt.resource, name=name)
        try:
            patched = apply_patch(copy.deepcopy(old), body, content_type, kind=rt.kind)
        except PatchError as exc:
            reason = {
                400: "BadRequest",
                413: "RequestEntityTooLarge",
                415: "UnsupportedMediaType",
                422: "Invalid",
                409: "Conflict",
            }
            raise errors.APIError(
                errors.status_body(
                    code=exc.code, reason=reason.get(exc.code, "BadRequest"), message=str(exc)
                )
            ) from None
        meta = patched.get("metadata")
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        if meta.get("name") != name:
            raise errors.bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL "
                f"({name})"
            )
        if rt.namespaced and meta.get("namespace") != ns:
            raise errors.bad_request(NAMESPACE_MISMATCH)
        patched["kind"] = rt.kind
        patched["apiVersion"] = rt.group_version
        if sub == "finalize":
            sub = ""
        warnings = _field_warnings(request, rt, patched, patch=True)
        result, _ = await self._admitted_update(request, rt, patched, old, sub=sub)
        return json_response(versioned(rt, result), warnings=warnings)

    async def _bind(
        self, request: web.Request, rt: ResourceType, ns: str, name: str
    ) -> web.Response:
        request[DECODE_AS] = ("Binding", "v1", "V1Binding")
        body = await read_object(request)
        target = body.get("target") or {}
        node = target.get("name") if isinstance(target, dict) else None
        if not node:
            raise errors.invalid(
                group="",
                kind="Binding",
                name=name,
                message=f'Binding "{name}" is invalid: target.name: Required value',
                causes=[
                    {
                        "reason": "FieldValueRequired",
                        "field": "target.name",
                        "message": "Required value",
                    }
                ],
            )
        pod = self.store.get(rt.key, ns, name)
        if pod is None:
            raise errors.not_found(group="", resource="pods", name=name)
        current = (pod.get("spec") or {}).get("nodeName")
        if current:
            raise errors.conflict(
                group="",
                resource="pods/binding",
                name=name,
                detail=f'pod {name} is already assigned to node "{current}"',
            )
        if pod["metadata"].get("deletionTimestamp"):
            raise errors.conflict(
                group="",
                resource="pods/binding",
                name=name,
                detail="pod is being deleted, cannot be assigned to a host",
            )
        new = dict(pod)
        new["metadata"] = dict(pod["metadata"])
        new["spec"] = {**(pod.get("spec") or {}), "nodeName": node}
        status = dict(pod.get("status") or {})
        conditions = [c for c in status.get("conditions") or () if c.get("type") != "PodScheduled"]
        conditions.append(
            {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": strategy.now_rfc3339(),
            }
        )
        status["conditions"] = conditions
        new["status"] = status
        if not _dry_run(request):
            self.store.put(rt.key, new, old=pod)
        return json_response(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "code": 201,
            },
            status=201,
        )

    # -- delete -----------------------------------------------------------------------------

    async def _delete_options(self, request: web.Request) -> JSON:
        loaded = await read_value(request, optional=True)
        if loaded is not None and not isinstance(loaded, dict):
            raise errors.bad_request("DeleteOptions must be a JSON object")
        opts: JSON = loaded or {}
        mismatches = typecheck.check("V1DeleteOptions", opts, prune=True).mismatches
        if mismatches:
            raise errors.bad_request(f"error decoding DeleteOptions: {mismatches[0].message()}")
        grace_q = query.int64(request, "gracePeriodSeconds")
        if grace_q is not None:
            opts["gracePeriodSeconds"] = grace_q
        for value in opts.get("dryRun") or ():
            if value != "All":
                raise errors.bad_request(f'dryRun: Unsupported value: "{value}"')
        if query.dry_run(request):
            opts["dryRun"] = ["All"]
        return opts

    async def _delete(
        self, request: web.Request, rt: ResourceType, ns: str, name: str
    ) -> web.Response:
        opts = await self._delete_options(request)
        obj = self.store.get(rt.key, ns, name)
        if obj is None:
            raise errors.not_found(group=rt.group, resource=rt.resource, name=name)
        pre = opts.get("preconditions")
        if not isinstance(pre, dict):
            pre = {}
        meta = obj["metadata"]
        if pre.get("uid") and pre["uid"] != meta.get("uid"):
            raise errors.conflict(
                group=rt.group,
                resource=rt.resource,
                name=name,
                detail=f"Precondition failed: UID in precondition: {pre['uid']}, "
                f"UID in object meta: {meta.get('uid')}",
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
            raise errors.conflict(
                group=rt.group,
                resource=rt.resource,
                name=name,
                detail="Precondition failed: ResourceVersion in precondition: "
                f"{pre['resourceVersion']}, "
                f"ResourceVersion in object meta: {meta.get('resourceVersion')}",
            )
        if self._hooked():
            await self._admit_delete(request, rt, obj)
            current = self.store.get(rt.key, ns, name)
            if current is None:
                raise errors.not_found(group=rt.group, resource=rt.resource, name=name)
            if current is not obj:
                raise errors.conflict(group=rt.group, resource=rt.resource, name=name)
        if opts.get("dryRun"):
            return json_response(versioned(rt, obj))
        grace = opts.get("gracePeriodSeconds")
        result = self.deletions.delete_object(rt, obj, grace if isinstance(grace, int) else None)
        return json_response(versioned(rt, result))

    async def _delete_collection(
        self, request: web.Request, rt: ResourceType, namespace: str | None
    ) -> web.Response:
        opts = await self._delete_options(request)
        predicate = self._predicate(request, rt)
        items = self.store.list(rt.key, namespace if rt.namespaced else None)
        if predicate is not None:
            items = [o for o in items if predicate(o)]
        grace = opts.get("gracePeriodSeconds")
        deleted: list[JSON] = []
        for obj in items:
            if self._hooked():
                await self._admit_delete(request, rt, obj)
            if opts.get("dryRun"):
                deleted.append(obj)
                continue
            current = self.store.get(rt.key, namespace_of(obj), name_of(obj))
            if current is not None:
                requested = grace if isinstance(grace, int) else None
                deleted.append(self.deletions.delete_object(rt, current, requested))
        return json_response(
            {
                "kind": f"{rt.kind}List",
                "apiVersion": rt.group_version,
                "metadata": {"resourceVersion": str(self.store.rv)},
                "items": [versioned(rt, o) for o in deleted],
            }
        )
