"""The controller's admission webhooks: AdmissionReview v1 in, AdmissionReview v1 out.

Served on the controller's HTTPS port (the ``antrea`` Service), registered by
``deploy/antrea.yml``'s ValidatingWebhookConfiguration / MutatingWebhookConfiguration:

- ``POST /validate/acnp``, ``/validate/annp``, ``/validate/tier``, ``/validate/clustergroup``,
  ``/validate/group`` - the checks of `validate` (the request's ``kind`` decides which);
- ``POST /mutate/acnp``, ``/mutate/annp`` - the defaults of `mutate`, as a JSONPatch.

The API server calls them without credentials (as kube-apiserver does unless configured), so
they answer anyone; they only judge the object they are sent. What a check needs to know about
other objects (tiers, the policies of a tier, groups' children) is read from the API server when
the request needs it (`KubeLookup`); if that read fails the answer is a refusal (fail closed).
"""

from __future__ import annotations

import base64
from typing import Any, Protocol

import orjson
import structlog
from aiohttp import web

from antrea.controller.admission import mutate, validate
from antrea.controller.admission.validate import Refusal

log = structlog.get_logger(__name__)

JSON = dict[str, Any]
CRD_GV = "/apis/crd.antrea.io/v1beta1"
VALIDATE_PATHS = ("acnp", "annp", "tier", "clustergroup", "group")
MUTATE_PATHS = ("acnp", "annp")


class Lookup(Protocol):
    async def tiers(self) -> dict[str, int]:
        """Every tier's priority by name (static tiers included once created)."""
        ...

    async def tier_references(self, tier: str) -> dict[str, int]:
        """Policies in ``tier`` by kind ("Antrea ClusterNetworkPolicies": n, ...)."""
        ...

    async def group_children(self, namespace: str | None) -> dict[str, list[str]]:
        """ClusterGroups (``namespace`` None) or the namespace's Groups -> their childGroups."""
        ...


class KubeGetter(Protocol):
    async def get(self, path: str) -> JSON | None: ...


class KubeLookup:
    """`Lookup` by listing from the API server (a 404, e.g. CRD not installed, is empty)."""

    def __init__(self, kube: KubeGetter) -> None:
        self.kube = kube

    async def _items(self, path: str) -> list[JSON]:
        listed = await self.kube.get(path)
        items = (listed or {}).get("items") or []
        return [i for i in items if isinstance(i, dict)]

    async def tiers(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in await self._items(f"{CRD_GV}/tiers"):
            prio = (t.get("spec") or {}).get("priority")
            if isinstance(prio, int):
                out[str(t["metadata"]["name"])] = prio
        return out

    async def tier_references(self, tier: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for resource, label in (
            ("clusternetworkpolicies", "Antrea ClusterNetworkPolicies"),
            ("networkpolicies", "Antrea NetworkPolicies"),
        ):
            items = await self._items(f"{CRD_GV}/{resource}")
            out[label] = sum(1 for p in items if validate.policy_tier(p) == tier)
        return out

    async def group_children(self, namespace: str | None) -> dict[str, list[str]]:
        path = (
            f"{CRD_GV}/clustergroups"
            if namespace is None
            else f"{CRD_GV}/namespaces/{namespace}/groups"
        )
        return {
            str(g["metadata"]["name"]): [
                str(c) for c in (g.get("spec") or {}).get("childGroups") or ()
            ]
            for g in await self._items(path)
        }


async def judge(request: JSON, lookup: Lookup) -> tuple[list[Refusal], list[str]]:
    """Refusals (and warnings) for one AdmissionRequest of a validating webhook."""
    kind = str((request.get("kind") or {}).get("kind") or "")
    op = str(request.get("operation") or "")
    obj = request.get("object") if isinstance(request.get("object"), dict) else None
    old = request.get("oldObject") if isinstance(request.get("oldObject"), dict) else None
    user = str((request.get("userInfo") or {}).get("username") or "")
    if kind in ("ClusterNetworkPolicy", "NetworkPolicy"):
        if op in ("CREATE", "UPDATE") and obj is not None:
            return (
                validate.validate_policy(
                    obj, await lookup.tiers(), cluster=kind == "ClusterNetworkPolicy"
                ),
                [],
            )
        return [], []
    if kind == "Tier":
        if op == "CREATE" and obj is not None:
            return validate.validate_tier_create(obj, await lookup.tiers()), []
        if op == "UPDATE" and obj is not None and old is not None:
            return validate.validate_tier_update(obj, old, user), []
        if op == "DELETE" and old is not None:
            name = str((old.get("metadata") or {}).get("name") or "")
            return validate.validate_tier_delete(old, await lookup.tier_references(name)), []
        return [], []
    if kind in ("ClusterGroup", "Group"):
        if op in ("CREATE", "UPDATE") and obj is not None:
            cluster = kind == "ClusterGroup"
            ns = None if cluster else str(request.get("namespace") or "")
            return (
                validate.validate_group(
                    obj, cluster=cluster, children_of=await lookup.group_children(ns)
                ),
                [],
            )
        return [], []
    return [], []


def response(uid: str, allowed: bool, **extra: Any) -> JSON:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": allowed, **extra},
    }


def refusal_status(kind: str, name: str, refusals: list[Refusal]) -> JSON:
    # Like upstream: no code or reason of our own, so the API server answers 400 with
    # 'admission webhook "..." denied the request: <field>: <reason>' (kubectl prints it as
    # is); the causes carry the field paths for clients that read them.
    return {
        "status": "Failure",
        "message": "; ".join(str(r) for r in refusals),
        "details": {
            "name": name,
            "kind": kind,
            "causes": [
                {"reason": "FieldValueInvalid", "field": r.field, "message": r.message}
                for r in refusals
            ],
        },
    }


async def _read_review(request: web.Request) -> JSON:
    try:
        review = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=f"invalid AdmissionReview: {exc}") from None
    if not isinstance(review, dict) or not isinstance(review.get("request"), dict):
        raise web.HTTPBadRequest(text="invalid AdmissionReview: no request")
    if review.get("apiVersion") != "admission.k8s.io/v1":
        raise web.HTTPBadRequest(text="only admission.k8s.io/v1 AdmissionReview is served")
    req: JSON = review["request"]
    return req


def _json(body: JSON) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json")


class AdmissionHandlers:
    def __init__(self, lookup: Lookup) -> None:
        self.lookup = lookup

    def add_routes(self, app: web.Application) -> None:
        for path in VALIDATE_PATHS:
            app.router.add_post(f"/validate/{path}", self.validating)
        for path in MUTATE_PATHS:
            app.router.add_post(f"/mutate/{path}", self.mutating)

    async def validating(self, request: web.Request) -> web.Response:
        req = await _read_review(request)
        uid = str(req.get("uid") or "")
        kind = str((req.get("kind") or {}).get("kind") or "")
        name = str(req.get("name") or "")
        try:
            refusals, warnings = await judge(req, self.lookup)
        except Exception as exc:  # fail closed: a check that cannot run refuses
            log.warning("admission_lookup_failed", kind=kind, name=name, error=str(exc))
            refusals = [Refusal("", f"cannot validate {kind} {name}: {exc}")]
            warnings = []
        if refusals:
            log.info("admission_refused", kind=kind, name=name, reasons=[str(r) for r in refusals])
            return _json(response(uid, False, status=refusal_status(kind, name, refusals)))
        extra: JSON = {"warnings": warnings} if warnings else {}
        return _json(response(uid, True, **extra))

    async def mutating(self, request: web.Request) -> web.Response:
        req = await _read_review(request)
        uid = str(req.get("uid") or "")
        obj = req.get("object")
        ops = mutate.policy_patch(obj) if isinstance(obj, dict) else []
        if req.get("operation") not in ("CREATE", "UPDATE") or not ops:
            return _json(response(uid, True))
        patch = base64.b64encode(orjson.dumps(ops)).decode()
        return _json(response(uid, True, patchType="JSONPatch", patch=patch))
