"""Per-kind write semantics: what the server fills in, keeps, resets and bumps.

This mirrors the "strategies" of kube-apiserver's registries (PrepareForCreate,
PrepareForUpdate, defaulting), reduced to what clients of this project can observe:
server-owned metadata, defaults that kubectl and controllers rely on, the split between a
resource and its ``status`` subresource, and when ``metadata.generation`` moves.
"""

from __future__ import annotations

import copy
import datetime as dt
import secrets
import uuid
from typing import Any

from antrea.testbed.apiserver import errors
from antrea.testbed.apiserver.resources import ResourceType

JSON = dict[str, Any]

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
DEFAULT_GRACE_SECONDS = 30
# Same alphabet as upstream's generateName suffixes (no vowels, no confusable digits).
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
# Server-owned metadata a client cannot change with an update.
_KEPT_METADATA = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds")


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> dt.datetime:
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def format_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def generate_name(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(5))


def _spec_part(rt: ResourceType, obj: JSON) -> Any:
    """What a generation bump watches: ``spec``, or for custom resources all but metadata
    (and status when it is a subresource)."""
    if rt.custom:
        skip = {"metadata", "apiVersion", "kind"}
        if rt.status_subresource:
            skip.add("status")
        return {k: v for k, v in obj.items() if k not in skip}
    return obj.get("spec")


# -- shape ---------------------------------------------------------------------------------

_META_STRINGS = ("name", "generateName", "namespace", "uid", "resourceVersion")
_META_MAPS = ("labels", "annotations")


def check_shape(rt: ResourceType, obj: JSON) -> None:
    """Reject bodies the real server could not even decode (a string where an object
    belongs), with a 400 like its JSON decoder's, before any defaulting touches them."""

    def fail(field: str, want: str, value: Any) -> errors.APIError:
        got = type(value).__name__.replace("str", "string").replace("dict", "object")
        return errors.bad_request(
            f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
            f"json: cannot unmarshal {got} into Go struct field {rt.kind}.{field} of type {want}"
        )

    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        raise fail("metadata", "v1.ObjectMeta", meta)
    for key in _META_STRINGS:
        if key in meta and meta[key] is not None and not isinstance(meta[key], str):
            raise fail(f"metadata.{key}", "string", meta[key])
    for key in _META_MAPS:
        value = meta.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise fail(f"metadata.{key}", "map[string]string", value)
        for item in value.values():
            if not isinstance(item, str):
                raise fail(f"metadata.{key}", "string", item)
    finalizers = meta.get("finalizers")
    if finalizers is not None and (
        not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers)
    ):
        raise fail("metadata.finalizers", "[]string", finalizers)
    if not rt.custom:
        for key in ("spec", "status"):
            if key in obj and obj[key] is not None and not isinstance(obj[key], dict):
                raise fail(key, f"v1.{rt.kind}{key.capitalize()}", obj[key])


# -- create --------------------------------------------------------------------------------


def prepare_create(rt: ResourceType, obj: JSON) -> JSON:
    """Fill server-owned metadata and defaults into ``obj`` (already a private copy)."""
    meta = obj["metadata"]
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = now_rfc3339()
    for key in (
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
    ):
        meta.pop(key, None)
    if rt.generation:
        meta["generation"] = 1
    else:
        meta.pop("generation", None)
    if rt.custom and rt.status_subresource:
        obj.pop("status", None)
    defaulter = _CREATE_DEFAULTS.get((rt.group, rt.kind))
    if defaulter is not None:
        defaulter(obj)
    _default_common(rt, obj)
    return obj


def _default_common(rt: ResourceType, obj: JSON) -> None:
    defaulter = _DEFAULTS.get((rt.group, rt.kind))
    if defaulter is not None:
        defaulter(obj)


def _dicts(value: Any) -> list[JSON]:
    """The objects in a list field; anything malformed is left to validation."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _spec(obj: JSON) -> JSON | None:
    spec = obj.setdefault("spec", {})
    if spec is None:
        spec = obj["spec"] = {}
    return spec if isinstance(spec, dict) else None


def _pod_create(obj: JSON) -> None:
    obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}


def _pod_defaults(obj: JSON) -> None:
    spec = _spec(obj)
    if spec is None:
        return
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
    spec.setdefault("securityContext", {})
    for container in (*_dicts(spec.get("containers")), *_dicts(spec.get("initContainers"))):
        if not isinstance(container, dict):
            continue
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        if "imagePullPolicy" not in container:
            image = str(container.get("image", ""))
            tag = image.rsplit("/", 1)[-1]
            latest = ":" not in tag or tag.endswith(":latest")
            container["imagePullPolicy"] = "Always" if latest and "@" not in tag else "IfNotPresent"
        for port in _dicts(container.get("ports")):
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")


def _namespace_defaults(obj: JSON) -> None:
    meta = obj["metadata"]
    labels = meta.get("labels") or {}
    labels[NAMESPACE_NAME_LABEL] = meta.get("name", "")
    meta["labels"] = labels
    spec = _spec(obj)
    if spec is not None:
        spec.setdefault("finalizers", ["kubernetes"])


def _namespace_create(obj: JSON) -> None:
    obj["status"] = {"phase": "Active"}


def _service_defaults(obj: JSON) -> None:
    spec = _spec(obj)
    if spec is None:
        return
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["type"] in ("ClusterIP", "NodePort", "LoadBalancer"):
        spec.setdefault("internalTrafficPolicy", "Cluster")
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
    for port in _dicts(spec.get("ports")):
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            if "targetPort" not in port and "port" in port:
                port["targetPort"] = port["port"]


def _service_create(obj: JSON) -> None:
    obj["status"] = {"loadBalancer": {}}


def _networkpolicy_defaults(obj: JSON) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    if not spec.get("policyTypes"):
        types = ["Ingress"]
        if spec.get("egress"):
            types.append("Egress")
        spec["policyTypes"] = types
    for direction in ("ingress", "egress"):
        for rule in _dicts(spec.get(direction)):
            if rule.get("ports"):  # (most rules of a large policy have none)
                for port in _dicts(rule["ports"]):
                    port.setdefault("protocol", "TCP")


def _secret_defaults(obj: JSON) -> None:
    obj.setdefault("type", "Opaque")


def _crd_defaults(obj: JSON) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    spec.setdefault("scope", "Namespaced")
    names = spec.get("names")
    if isinstance(names, dict):
        names.setdefault("singular", str(names.get("kind", "")).lower())
        names.setdefault("listKind", f"{names.get('kind', '')}List")
    conversion = spec.setdefault("conversion", {})
    if isinstance(conversion, dict):
        conversion.setdefault("strategy", "None")


_CREATE_DEFAULTS = {
    ("", "Pod"): _pod_create,
    ("", "Namespace"): _namespace_create,
    ("", "Service"): _service_create,
}
_DEFAULTS = {
    ("", "Pod"): _pod_defaults,
    ("", "Namespace"): _namespace_defaults,
    ("", "Service"): _service_defaults,
    ("", "Secret"): _secret_defaults,
    ("networking.k8s.io", "NetworkPolicy"): _networkpolicy_defaults,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): _crd_defaults,
}


# -- update --------------------------------------------------------------------------------


def prepare_update(rt: ResourceType, new: JSON, old: JSON, *, subresource: str) -> JSON:
    """Merge a client's update with the server-owned parts of ``old``; ``new`` is private."""
    if subresource == "status":
        # Status writes change only status; metadata and spec stay (ResetObjectMetaForStatus).
        result = copy.copy(old)
        result["metadata"] = dict(old["metadata"])
        if "status" in new:
            result["status"] = new["status"]
        else:
            result.pop("status", None)
        result["metadata"]["resourceVersion"] = new["metadata"].get("resourceVersion")
        return result
    meta = new["metadata"]
    old_meta = old["metadata"]
    for key in _KEPT_METADATA:
        if key in old_meta:
            meta[key] = old_meta[key]
        else:
            meta.pop(key, None)
    meta.pop("managedFields", None)
    meta.pop("selfLink", None)
    if rt.status_subresource:
        if "status" in old:
            new["status"] = old["status"]
        else:
            new.pop("status", None)
    _default_common(rt, new)
    if rt.generation:
        generation = int(old_meta.get("generation") or 1)
        if _spec_part(rt, new) != _spec_part(rt, old):
            generation += 1
        meta["generation"] = generation
    else:
        meta.pop("generation", None)
    if rt.group == "" and rt.kind == "Service":
        spec, old_spec = new.setdefault("spec", {}), old.get("spec") or {}
        for key in ("clusterIP", "clusterIPs"):
            if key in old_spec and not spec.get(key):
                spec[key] = old_spec[key]
    return new


def unchanged(new: JSON, old: JSON) -> bool:
    """True when an update would store exactly what is there (no new resourceVersion)."""
    if new.keys() != old.keys():
        return False
    for key, value in new.items():
        if key == "metadata":
            continue
        if old[key] != value:
            return False
    a = {k: v for k, v in new["metadata"].items() if k != "resourceVersion"}
    b = {k: v for k, v in old["metadata"].items() if k != "resourceVersion"}
    return a == b


# -- delete --------------------------------------------------------------------------------


def grace_period(rt: ResourceType, obj: JSON, requested: int | None) -> int:
    """Seconds the object lingers with a deletionTimestamp before it is removed (0 = now).

    Only pods bound to a node are deleted gracefully (their kubelet confirms with a
    zero-grace delete); unscheduled and finished pods go at once, as upstream.
    """
    if not (rt.group == "" and rt.kind == "Pod"):
        return 0
    spec = obj.get("spec") or {}
    phase = (obj.get("status") or {}).get("phase")
    if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
        return 0
    if requested is not None:
        return max(0, requested)
    value = spec.get("terminationGracePeriodSeconds")
    return int(value) if isinstance(value, int) else DEFAULT_GRACE_SECONDS
