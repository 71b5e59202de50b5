"""The resource verbs: get, list, watch, create, update, patch, delete, deletecollection.

One `ResourceHandlers` instance serves every resource generically; what differs per kind
lives in `strategy` (defaults, status split, generation), `crd` (CustomResourceDefinitions)
and the validation/patch modules. All store mutations happen synchronously between awaits,
so a request either commits completely or not at all.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime as dt
from typing import Any

import orjson
import structlog
import yaml
from aiohttp import web

from antrea.apiserver import crd, crschema, errors, fields, protobuf, strategy
from antrea.apiserver.auth import (
    AllowAuthenticated,
    Authorizer,
    Identity,
    RequestAttributes,
    TokenAuthenticator,
)
from antrea.apiserver.resources import Registry, ResourceType
from antrea.apiserver.routing import ResourcePath
from antrea.apiserver.store import Predicate, Store, name_of, namespace_of
from antrea.apiserver.tables import to_table
from antrea.apiserver.watch import serve_watch, versioned

log = structlog.get_logger(__name__)

JSON = dict[str, Any]
NS_KEY = ("", "namespaces")
POD_KEY = ("", "pods")
CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACE_MISMATCH = (
    "the namespace of the provided object does not match the namespace sent on the request"
)
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def json_response(
    body: Any, status: int = 200, *, warnings: list[str] | None = None
) -> web.Response:
    response = web.Response(body=orjson.dumps(body), status=status, content_type="application/json")
    for text in warnings or ():
        response.headers.add("Warning", f"299 - {orjson.dumps(text).decode()}")
    return response


def _field_warnings(request: web.Request, rt: ResourceType, obj: JSON) -> list[str]:
    """Apply ``fieldValidation``: Strict fails on unknown fields, Warn (the default) warns."""
    mode = request.query.get("fieldValidation", "Warn")
    if mode == "Ignore":
        return []
    if rt.custom:
        unknown = crschema.unknown_fields(rt.schema, obj) if rt.schema is not None else []
    else:
        unknown = fields.unknown_fields(rt.group, rt.kind, obj)
    if not unknown:
        return []
    if mode == "Strict":
        listed = ", ".join(f'unknown field "{u}"' for u in unknown)
        raise errors.bad_request(
            f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
            f"strict decoding error: {listed}"
        )
    return [f'unknown field "{u}"' for u in unknown]


def _bool(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


def _wants_table(request: web.Request) -> bool:
    return "as=Table" in request.headers.get("Accept", "")


def _dry_run(request: web.Request) -> bool:
    return bool(request.query.get("dryRun"))


async def read_object(request: web.Request) -> JSON:
    raw = await request.read()
    ctype = request.content_type
    try:
        if "protobuf" in ctype:
            obj: Any = protobuf.decode(raw)
        elif "yaml" in ctype:
            obj = yaml.safe_load(raw)
        else:
            obj = orjson.loads(raw or b"null")
    except protobuf.ProtobufError as exc:
        raise errors.APIError(
            errors.status_body(code=415, reason="UnsupportedMediaType", message=str(exc))
        ) from None
    except (orjson.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise errors.bad_request(f"error decoding request body: {exc}") from None
    if not isinstance(obj, dict):
        raise errors.bad_request("the request body must be a JSON object")
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise errors.bad_request("metadata must be an object")
    return obj


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
        self._timers: dict[tuple[str, str, str], asyncio.TimerHandle] = {}

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
                self._arm_pod_timer(pod)

    def expire_events(self, ttl: float) -> int:
        """Remove core Events older than ``ttl`` seconds (kube-apiserver's ``--event-ttl``)."""
        key = ("", "events")
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=ttl)
        rt = self._rt(key)
        expired = 0
        for event in self.store.list(key):
            stamp = event.get("lastTimestamp") or event["metadata"].get("creationTimestamp")
            try:
                when = strategy.parse_time(str(stamp))
            except ValueError:
                continue
            if when < cutoff:
                self._remove(rt, event)
                expired += 1
        return expired

    def close(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

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
        if rt.virtual:
            if method != "POST" or target.name is not None:
                raise errors.method_not_allowed()
            if rt.resource == "selfsubjectreviews":
                return await self._self_subject_review(request, identity)
            if rt.resource == "selfsubjectaccessreviews":
                return await self._self_access_review(request, identity)
            return await self._token_review(request)
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
            watch = target.watch or _bool(request.query.get("watch"))
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
        from antrea.apiserver.selectors import (
            SelectorError,
            parse_field_selector,
            parse_label_selector,
        )

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
        limit_s = request.query.get("limit")
        limit = int(limit_s) if limit_s and limit_s.isdigit() else 0
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
        from antrea.apiserver.validation import field_errors_to_status, validate

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
        obj = self._normalize_body(rt, await read_object(request), ns)
        warnings = _field_warnings(request, rt, obj)
        created = self.create(rt, obj, ns, dry_run=_dry_run(request))
        return json_response(created, status=201, warnings=warnings)

    def create(self, rt: ResourceType, obj: JSON, ns: str, *, dry_run: bool = False) -> JSON:
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
        name = meta["name"]
        if rt.custom and rt.schema is not None:
            obj = crschema.prune_and_default(rt.schema, obj)
        obj = strategy.prepare_create(rt, obj)
        if rt.key == CRD_KEY:
            crd.check_crd(obj)
            obj["status"] = crd.crd_status(obj, None, strategy.now_rfc3339())
        self._validate(rt, obj, None)
        if rt.namespaced:
            self._check_namespace_open(rt, ns, name)
        if self.store.get(rt.key, ns, name) is not None:
            raise errors.already_exists(group=rt.group, resource=rt.resource, name=name)
        if rt.key == ("", "services"):
            strategy.allocate_cluster_ip(obj, self._used_cluster_ips())
        if dry_run:
            return obj
        self.store.put(rt.key, obj, old=None)
        if rt.key == CRD_KEY:
            self.registry.register_crd(obj)
        return obj

    def _used_cluster_ips(self) -> set[str]:
        used: set[str] = set()
        for svc in self.store.list(("", "services")):
            used.update((svc.get("spec") or {}).get("clusterIPs") or ())
        return used

    # -- update / patch ---------------------------------------------------------------------

    async def _update(
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
        old = self.store.get(rt.key, ns, name)
        if old is None:
            if rt.create_on_update and not sub:
                created_obj = self.create(rt, obj, ns, dry_run=_dry_run(request))
                return json_response(created_obj, status=201, warnings=warnings)
            raise errors.not_found(group=rt.group, resource=rt.resource, name=name)
        if sub == "finalize":
            sub = ""
        result, created = self.update(rt, obj, old, sub=sub, dry_run=_dry_run(request))
        return json_response(
            versioned(rt, result), status=201 if created else 200, warnings=warnings
        )

    def update(
        self, rt: ResourceType, new: JSON, old: JSON, *, sub: str = "", dry_run: bool = False
    ) -> tuple[JSON, bool]:
        """Optimistic-concurrency update of ``old`` with the client's ``new`` (a private dict)."""
        name = old["metadata"]["name"]
        wanted_rv = new["metadata"].get("resourceVersion")
        if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(group=rt.group, resource=rt.resource, name=name)
        if rt.custom and rt.schema is not None:
            new = crschema.prune_and_default(rt.schema, new)
        new = strategy.prepare_update(rt, new, old, subresource=sub)
        if rt.key == CRD_KEY and sub != "status":
            crd.check_crd(new)
            new["status"] = crd.crd_status(new, old.get("status"), strategy.now_rfc3339())
        self._validate(rt, new, old)
        if strategy.unchanged(new, old):
            return old, False
        if dry_run:
            return new, False
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            timer_pending = (rt.key[0], rt.key[1], meta["uid"]) in self._timers
            if not timer_pending:
                self._remove(rt, new)
                return new, False
        self.store.put(rt.key, new, old=old)
        if rt.key == CRD_KEY:
            self.registry.register_crd(new)
        return new, False

    async def _patch(
        self, request: web.Request, rt: ResourceType, ns: str, name: str, sub: str
    ) -> web.Response:
        from antrea.apiserver.patch import PatchError, apply_patch

        old = self.store.get(rt.key, ns, name)
        if old is None:
            raise errors.not_found(group=rt.group, resource=rt.resource, name=name)
        body = await request.read()
        try:
            patched = apply_patch(copy.deepcopy(old), body, request.content_type, kind=rt.kind)
        except PatchError as exc:
            reason = {
                400: "BadRequest",
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
        warnings = _field_warnings(request, rt, patched)
        result, _ = self.update(rt, patched, old, sub=sub, dry_run=_dry_run(request))
        return json_response(versioned(rt, result), warnings=warnings)

    async def _bind(
        self, request: web.Request, rt: ResourceType, ns: str, name: str
    ) -> web.Response:
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
        raw = await request.read()
        opts: JSON = {}
        if raw.strip():
            try:
                loaded = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise errors.bad_request(f"error decoding DeleteOptions: {exc}") from None
            if isinstance(loaded, dict):
                opts = loaded
        grace_q = request.query.get("gracePeriodSeconds")
        if grace_q is not None:
            try:
                opts["gracePeriodSeconds"] = int(grace_q)
            except ValueError:
                raise errors.bad_request("invalid gracePeriodSeconds") from None
        if request.query.get("dryRun"):
            opts["dryRun"] = ["All"]
        return opts

    async def _delete(
        self, request: web.Request, rt: ResourceType, ns: str, name: str
    ) -> web.Response:
        opts = await self._delete_options(request)
        obj = self.store.get(rt.key, ns, name)
        if obj is None:
            raise errors.not_found(group=rt.group, resource=rt.resource, name=name)
        pre = opts.get("preconditions") or {}
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
        if opts.get("dryRun"):
            return json_response(versioned(rt, obj))
        grace = opts.get("gracePeriodSeconds")
        result = self.delete_object(rt, obj, grace if isinstance(grace, int) else None)
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
            if opts.get("dryRun"):
                deleted.append(obj)
                continue
            current = self.store.get(rt.key, namespace_of(obj), name_of(obj))
            if current is not None:
                deleted.append(
                    self.delete_object(rt, current, grace if isinstance(grace, int) else None)
                )
        return json_response(
            {
                "kind": f"{rt.kind}List",
                "apiVersion": rt.group_version,
                "metadata": {"resourceVersion": str(self.store.rv)},
                "items": [versioned(rt, o) for o in deleted],
            }
        )

    def delete_object(self, rt: ResourceType, obj: JSON, requested_grace: int | None) -> JSON:
        """Delete now, or mark for deletion (graceful pods, finalizers); returns the last state."""
        if rt.key == NS_KEY:
            return self._delete_namespace(rt, obj)
        meta = obj["metadata"]
        grace = strategy.grace_period(rt, obj, requested_grace)
        finalizers = meta.get("finalizers") or []
        if grace == 0 and not finalizers:
            return self._remove(rt, obj)
        if meta.get("deletionTimestamp"):
            current = meta.get("deletionGracePeriodSeconds")
            if not (isinstance(current, int) and grace < current):
                return obj
        new = dict(obj)
        new["metadata"] = dict(meta)
        when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=grace)
        new["metadata"]["deletionTimestamp"] = strategy.format_time(when)
        new["metadata"]["deletionGracePeriodSeconds"] = grace
        self.store.put(rt.key, new, old=obj)
        if grace > 0:
            self._arm_pod_timer(new)
        return new

    def _arm_pod_timer(self, pod: JSON) -> None:
        meta = pod["metadata"]
        key = ("", "pods", meta["uid"])
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        try:
            when = strategy.parse_time(meta["deletionTimestamp"])
        except (KeyError, ValueError):
            return
        delay = max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(
            delay, self._expire_pod, namespace_of(pod), name_of(pod), meta["uid"]
        )

    def _expire_pod(self, ns: str, name: str, uid: str) -> None:
        self._timers.pop(("", "pods", uid), None)
        pod = self.store.get(POD_KEY, ns, name)
        if pod is None or pod["metadata"].get("uid") != uid:
            return
        if pod["metadata"].get("finalizers"):
            return
        log.info("apiserver_pod_grace_expired", namespace=ns, pod=name)
        self._remove(self._rt(POD_KEY), pod)

    def _remove(self, rt: ResourceType, obj: JSON) -> JSON:
        final = dict(obj)
        final["metadata"] = dict(obj["metadata"])
        self.store.remove(rt.key, final)
        uid = final["metadata"].get("uid", "")
        timer = self._timers.pop((rt.key[0], rt.key[1], uid), None)
        if timer is not None:
            timer.cancel()
        if rt.key == CRD_KEY:
            self._crd_removed(final)
        ns = namespace_of(final)
        if rt.namespaced and ns:
            ns_obj = self.store.get(NS_KEY, "", ns)
            if ns_obj is not None and ns_obj["metadata"].get("deletionTimestamp"):
                self._finalize_namespace_if_empty(ns_obj)
        return final

    def _crd_removed(self, crd_obj: JSON) -> None:
        spec = crd_obj.get("spec") or {}
        key = (spec.get("group", ""), (spec.get("names") or {}).get("plural", ""))
        rt = self.registry.any_version(*key)
        if rt is not None:
            for obj in self.store.list(key):
                final = dict(obj)
                final["metadata"] = dict(obj["metadata"])
                self.store.remove(key, final)
        self.store.close_watchers(key)
        self.store.drop_resource(key)
        self.registry.unregister_crd(crd_obj["metadata"]["name"])

    def _delete_namespace(self, rt: ResourceType, ns_obj: JSON) -> JSON:
        name = name_of(ns_obj)
        if not ns_obj["metadata"].get("deletionTimestamp"):
            new = dict(ns_obj)
            new["metadata"] = {
                **ns_obj["metadata"],
                "deletionTimestamp": strategy.now_rfc3339(),
                "deletionGracePeriodSeconds": 0,
            }
            new["status"] = {**(ns_obj.get("status") or {}), "phase": "Terminating"}
            self.store.put(NS_KEY, new, old=ns_obj)
            ns_obj = new
        for key in list(self.store.resource_keys()):
            content_rt = self.registry.any_version(*key)
            if content_rt is None or not content_rt.namespaced:
                continue
            for obj in self.store.list(key, name):
                current = self.store.get(key, name, name_of(obj))
                if current is not None:
                    self.delete_object(content_rt, current, None)
        current_ns = self.store.get(NS_KEY, "", name)
        if current_ns is None:
            return ns_obj
        return self._finalize_namespace_if_empty(current_ns)

    def _finalize_namespace_if_empty(self, ns_obj: JSON) -> JSON:
        name = name_of(ns_obj)
        for key in list(self.store.resource_keys()):
            if key != NS_KEY and self.store.count(key, name):
                return ns_obj
        return self._remove(self._rt(NS_KEY), ns_obj)

    # -- reviews ----------------------------------------------------------------------------

    async def _self_subject_review(self, request: web.Request, identity: Identity) -> web.Response:
        await request.read()
        user = {"username": identity.user, "uid": identity.uid, "groups": list(identity.groups)}
        return json_response(
            {
                "kind": "SelfSubjectReview",
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"creationTimestamp": strategy.now_rfc3339()},
                "status": {"userInfo": user},
            },
            status=201,
        )

    async def _self_access_review(self, request: web.Request, identity: Identity) -> web.Response:
        body = await read_object(request)
        raw_spec = body.get("spec")
        spec: JSON = raw_spec if isinstance(raw_spec, dict) else {}
        ra = spec.get("resourceAttributes") or {}
        nra = spec.get("nonResourceAttributes") or {}
        attrs = RequestAttributes(
            verb=str(ra.get("verb") or nra.get("verb") or ""),
            group=str(ra.get("group") or ""),
            resource=str(ra.get("resource") or ""),
            subresource=str(ra.get("subresource") or ""),
            namespace=str(ra.get("namespace") or ""),
            name=str(ra.get("name") or ""),
            path=str(nra.get("path") or ""),
        )
        allowed = self.authorizer.authorize(identity, attrs)
        return json_response(
            {
                "kind": "SelfSubjectAccessReview",
                "apiVersion": "authorization.k8s.io/v1",
                "metadata": {"creationTimestamp": None},
                "spec": spec,
                "status": {"allowed": allowed},
            },
            status=201,
        )

    async def _token_review(self, request: web.Request) -> web.Response:
        body = await read_object(request)
        spec = body.get("spec") or {}
        token = spec.get("token") if isinstance(spec, dict) else None
        ident = self.authenticator.authenticate_token(token) if isinstance(token, str) else None
        status: JSON
        if ident is None:
            status = {"user": {}, "error": "invalid bearer token"}
        else:
            status = {
                "authenticated": True,
                "user": {"username": ident.user, "uid": ident.uid, "groups": list(ident.groups)},
                "audiences": spec.get("audiences") or [],
            }
        return json_response(
            {
                "kind": "TokenReview",
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"creationTimestamp": None},
                "spec": spec,
                "status": status,
            },
            status=201,
        )
