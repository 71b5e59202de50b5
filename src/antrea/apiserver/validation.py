"""Object validation as kube-apiserver performs it, and the 422 Status it answers with.

A faithful subset of ``pkg/apis/*/validation``: every check here exists upstream with the same
field path, error type and message, so a client (kubectl, the lab, our tests) sees the same
rejection from the embedded server as from a real cluster, and nothing the lab writes passes here
but fails there. NetworkPolicy is validated in full (it is the product's input); other kinds get
the checks that catch real mistakes (names, labels, ports, protocols, immutable fields) without
reproducing rules that only concern features this project does not serve.

`validate` expects the object after the server's defaulting (protocol defaults to TCP, ...), as
upstream validates after defaulting.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from antrea.k8s.names import (
    is_config_map_key,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_path_segment_name,
    is_qualified_name,
    is_valid_cidr,
    is_valid_ip,
    is_valid_label_value,
    is_valid_port_name,
    is_valid_port_num,
    parse_cidr,
)

JSON = dict[str, Any]

REQUIRED = "FieldValueRequired"
INVALID = "FieldValueInvalid"
NOT_SUPPORTED = "FieldValueNotSupported"
DUPLICATE = "FieldValueDuplicate"
FORBIDDEN = "FieldValueForbidden"
TOO_LONG = "FieldValueTooLong"
TOO_MANY = "FieldValueTooMany"
NOT_FOUND = "FieldValueNotFound"

_TYPE_TEXT = {
    REQUIRED: "Required value",
    INVALID: "Invalid value",
    NOT_SUPPORTED: "Unsupported value",
    DUPLICATE: "Duplicate value",
    FORBIDDEN: "Forbidden",
    TOO_LONG: "Too long",
    TOO_MANY: "Too many",
    NOT_FOUND: "Not found",
    "FieldValueTypeInvalid": "Invalid value",
    "InternalError": "Internal error",
}
# Types whose message never shows the offending value (as in field.Error.ErrorBody).
_VALUELESS = frozenset({REQUIRED, FORBIDDEN, TOO_LONG, "InternalError"})

PROTOCOLS = ("TCP", "UDP", "SCTP")
_SORTED_PROTOCOLS = sorted(PROTOCOLS)
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024
CONFIG_MAP_SIZE_LIMIT = 1024 * 1024


def _go_value(value: object) -> str:
    """Render a bad value the way Go's field.Error does (%q strings, %v scalars, %#v others)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "[]string{" + ", ".join(json.dumps(v, ensure_ascii=False) for v in value) + "}"
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass
class FieldError:
    """One ``field.Error``: where, what kind of problem, why, and the offending value."""

    path: str
    type: str
    detail: str
    value: object = None

    def body(self) -> str:
        """``ErrorBody()``: the message without the field path (a Status cause's message)."""
        text = _TYPE_TEXT.get(self.type, self.type)
        if self.type not in _VALUELESS:
            text = f"{text}: {_go_value(self.value)}"
        if self.detail:
            text += f": {self.detail}"
        return text

    def __str__(self) -> str:
        return f"{self.path}: {self.body()}"


def required(path: str, detail: str = "") -> FieldError:
    return FieldError(path, REQUIRED, detail)


def invalid(path: str, value: object, detail: str) -> FieldError:
    return FieldError(path, INVALID, detail, value)


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError(path, FORBIDDEN, detail)


def duplicate(path: str, value: object) -> FieldError:
    return FieldError(path, DUPLICATE, "", value)


def not_supported(path: str, value: object, supported: Iterable[str]) -> FieldError:
    detail = "supported values: " + ", ".join(json.dumps(s) for s in supported)
    return FieldError(path, NOT_SUPPORTED, detail, value)


def field_errors_to_status(
    kind: str, name: str, errors: list[FieldError], *, group: str = ""
) -> JSON:
    """The ``metav1.Status`` of ``apierrors.NewInvalid``: HTTP 422, reason Invalid."""
    qualified = f"{kind}.{group}" if group else kind
    seen: set[str] = set()
    messages: list[str] = []
    for err in errors:  # utilerrors.NewAggregate drops repeated messages
        msg = str(err)
        if msg not in seen:
            seen.add(msg)
            messages.append(msg)
    quoted = json.dumps(name)
    if not messages:
        message = f"{qualified} {quoted} is invalid"
    elif len(messages) == 1:
        message = f"{qualified} {quoted} is invalid: {messages[0]}"
    else:
        message = f"{qualified} {quoted} is invalid: [{', '.join(messages)}]"
    details: JSON = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = kind
    details["causes"] = [{"reason": e.type, "message": e.body(), "field": e.path} for e in errors]
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "Invalid",
        "details": details,
        "code": 422,
    }


# --- generic pieces ------------------------------------------------------------------------


def _as_dict(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dicts(value: Any) -> Iterator[tuple[int, JSON]]:
    """Index and item of a list of objects (non-objects read as empty objects)."""
    for i, item in enumerate(_as_list(value)):
        yield i, _as_dict(item)


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def validate_labels(labels: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for key, value in _as_dict(labels).items():
        errs.extend(invalid(path, key, m) for m in is_qualified_name(str(key)))
        if not isinstance(value, str):
            errs.append(invalid(path, value, "label values must be strings"))
            continue
        errs.extend(invalid(path, value, m) for m in is_valid_label_value(value))
    return errs


def validate_annotations(annotations: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    anns = _as_dict(annotations)
    for key in anns:
        # Case does not matter for annotation keys: upstream lowercases before checking.
        errs.extend(invalid(path, key, m) for m in is_qualified_name(str(key).lower()))
    size = sum(len(str(k)) + len(str(v)) for k, v in anns.items())
    if size > TOTAL_ANNOTATION_SIZE_LIMIT:
        errs.append(
            FieldError(path, TOO_LONG, f"may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT} bytes")
        )
    return errs


def validate_label_selector(sel: Any, path: str) -> list[FieldError]:
    """``metav1validation.ValidateLabelSelector``."""
    errs: list[FieldError] = []
    if sel is None:
        return errs
    if not isinstance(sel, dict):
        return [invalid(path, sel, "must be an object")]
    errs.extend(validate_labels(sel.get("matchLabels"), f"{path}.matchLabels"))
    for i, expr in _dicts(_as_list(sel.get("matchExpressions"))):
        epath = f"{path}.matchExpressions[{i}]"
        op = expr.get("operator")
        values = _as_list(expr.get("values"))
        if op in ("In", "NotIn"):
            if not values:
                errs.append(
                    required(
                        f"{epath}.values", "must be specified when `operator` is 'In' or 'NotIn'"
                    )
                )
        elif op in ("Exists", "DoesNotExist"):
            if values:
                errs.append(
                    forbidden(
                        f"{epath}.values",
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    )
                )
        else:
            errs.append(invalid(f"{epath}.operator", op, "not a valid selector operator"))
        key = str(expr.get("key", ""))
        errs.extend(invalid(f"{epath}.key", key, m) for m in is_qualified_name(key))
        for j, value in enumerate(values):
            errs.extend(
                invalid(f"{epath}.values[{j}]", value, m) for m in is_valid_label_value(str(value))
            )
    return errs


_NameFn = Callable[[str], list[str]]


def _mask_trailing_dash(name: str) -> str:
    return name[:-1] + "a" if len(name) > 1 and name.endswith("-") else name


def validate_object_meta(
    obj: JSON, *, name_fn: _NameFn, namespaced: bool | None, path: str = "metadata"
) -> list[FieldError]:
    """``ValidateObjectMeta``; ``namespaced=None`` when the scope is unknown (checked if set)."""
    errs: list[FieldError] = []
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return [required(path, "")]
    generate = meta.get("generateName") or ""
    if generate:
        errs.extend(
            invalid(f"{path}.generateName", generate, m)
            for m in name_fn(_mask_trailing_dash(str(generate)))
        )
    name = meta.get("name") or ""
    if not name:
        if not generate:
            errs.append(required(f"{path}.name", "name or generateName is required"))
    else:
        errs.extend(invalid(f"{path}.name", name, m) for m in name_fn(str(name)))
    namespace = meta.get("namespace") or ""
    if namespaced is True and not namespace:
        errs.append(required(f"{path}.namespace", ""))
    elif namespaced is False and namespace:
        errs.append(forbidden(f"{path}.namespace", "not allowed on this type"))
    elif namespace:
        errs.extend(
            invalid(f"{path}.namespace", namespace, m) for m in is_dns1123_label(str(namespace))
        )
    generation = _int(meta.get("generation"))
    if generation is not None and generation < 0:
        errs.append(invalid(f"{path}.generation", generation, "must be greater than or equal to 0"))
    errs.extend(validate_labels(meta.get("labels"), f"{path}.labels"))
    errs.extend(validate_annotations(meta.get("annotations"), f"{path}.annotations"))
    for i, fin in enumerate(_as_list(meta.get("finalizers"))):
        errs.extend(invalid(f"{path}.finalizers[{i}]", fin, m) for m in is_qualified_name(str(fin)))
    for i, ref in _dicts(_as_list(meta.get("ownerReferences"))):
        rpath = f"{path}.ownerReferences[{i}]"
        for key in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(key):
                errs.append(invalid(f"{rpath}.{key}", ref.get(key, ""), f"{key} must not be empty"))
    return errs


def validate_object_meta_update(new: JSON, old: JSON, path: str = "metadata") -> list[FieldError]:
    errs: list[FieldError] = []
    nm, om = _as_dict(new.get("metadata")), _as_dict(old.get("metadata"))
    for key in ("name", "namespace"):
        if (nm.get(key) or "") != (om.get(key) or ""):
            errs.append(invalid(f"{path}.{key}", nm.get(key) or "", "field is immutable"))
    if nm.get("uid") and om.get("uid") and nm["uid"] != om["uid"]:
        errs.append(invalid(f"{path}.uid", nm["uid"], "field is immutable"))
    if om.get("deletionTimestamp"):
        added = set(_as_list(nm.get("finalizers"))) - set(_as_list(om.get("finalizers")))
        for fin in sorted(added, key=str):
            errs.append(
                forbidden(
                    f"{path}.finalizers",
                    f"no new finalizers can be added if the object is being deleted, "
                    f"found new finalizers []string{{{json.dumps(fin)}}}",
                )
            )
    return errs


def _protocol(value: Any, path: str) -> list[FieldError]:
    if value is None or value in PROTOCOLS:
        return []
    return [not_supported(path, value, _SORTED_PROTOCOLS)]


# --- NetworkPolicy ----------------------------------------------------------------------------


def _validate_np_port(port: JSON, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if port.get("protocol") is not None and port["protocol"] not in PROTOCOLS:
        errs.append(not_supported(f"{path}.protocol", port["protocol"], PROTOCOLS))
    value = port.get("port")
    end = port.get("endPort")
    if value is not None:
        num = _int(value)
        if num is not None:
            errs.extend(invalid(f"{path}.port", num, m) for m in is_valid_port_num(num))
            if end is not None:
                end_num = _int(end)
                if end_num is None:
                    errs.append(invalid(f"{path}.endPort", end, "must be an integer"))
                else:
                    if end_num < num:
                        errs.append(
                            invalid(
                                f"{path}.endPort", num, "must be greater than or equal to `port`"
                            )
                        )
                    errs.extend(
                        invalid(f"{path}.endPort", end_num, m) for m in is_valid_port_num(end_num)
                    )
        elif isinstance(value, str):
            if end is not None:
                errs.append(
                    invalid(
                        f"{path}.endPort", end, "may not be specified when `port` is non-numeric"
                    )
                )
            errs.extend(invalid(f"{path}.port", value, m) for m in is_valid_port_name(value))
        else:
            errs.append(invalid(f"{path}.port", value, "must be an integer or a string"))
    elif end is not None:
        errs.append(
            invalid(f"{path}.endPort", end, "may not be specified when `port` is not specified")
        )
    return errs


def _validate_ip_block(ipb: JSON, path: str) -> list[FieldError]:
    cidr = ipb.get("cidr") or ""
    if not cidr:
        return [required(f"{path}.cidr", "")]
    errs = [invalid(f"{path}.cidr", cidr, m) for m in is_valid_cidr(str(cidr))]
    net = parse_cidr(str(cidr))
    if net is None:
        return errs
    for i, exc in enumerate(_as_list(ipb.get("except"))):
        epath = f"{path}.except[{i}]"
        errs.extend(invalid(epath, exc, m) for m in is_valid_cidr(str(exc)))
        sub = parse_cidr(str(exc))
        if sub is None:
            continue
        if (
            sub.version != net.version
            or sub.network_address not in net
            or net.prefixlen >= sub.prefixlen
        ):
            errs.append(invalid(epath, exc, "must be a strict subset of `cidr`"))
    return errs


def _validate_np_peer(peer: JSON, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    count = 0
    for key in ("podSelector", "namespaceSelector"):
        if peer.get(key) is not None:
            count += 1
            errs.extend(validate_label_selector(peer[key], f"{path}.{key}"))
    if peer.get("ipBlock") is not None:
        count += 1
        errs.extend(_validate_ip_block(_as_dict(peer["ipBlock"]), f"{path}.ipBlock"))
    if count == 0:
        errs.append(required(path, "must specify a peer"))
    elif count > 1 and peer.get("ipBlock") is not None:
        errs.append(forbidden(path, "may not specify both ipBlock and another peer"))
    return errs


def validate_network_policy_spec(spec: Any, path: str = "spec") -> list[FieldError]:
    """``ValidateNetworkPolicySpec`` (networking/validation)."""
    errs: list[FieldError] = []
    if not isinstance(spec, dict):
        return [required(path, "")]
    errs.extend(validate_label_selector(spec.get("podSelector"), f"{path}.podSelector"))
    for direction, peers_key in (("ingress", "from"), ("egress", "to")):
        for i, rule in _dicts(_as_list(spec.get(direction))):
            rpath = f"{path}.{direction}[{i}]"
            for j, port in enumerate(_as_list(rule.get("ports"))):
                errs.extend(_validate_np_port(_as_dict(port), f"{rpath}.ports[{j}]"))
            for j, peer in enumerate(_as_list(rule.get(peers_key))):
                errs.extend(_validate_np_peer(_as_dict(peer), f"{rpath}.{peers_key}[{j}]"))
    types = _as_list(spec.get("policyTypes"))
    allowed = ("Ingress", "Egress")
    if len(types) > len(allowed):
        errs.append(
            invalid(f"{path}.policyTypes", types, "may not specify more than two policyTypes")
        )
        return errs
    for i, ptype in enumerate(types):
        if ptype not in allowed:
            errs.append(not_supported(f"{path}.policyTypes[{i}]", ptype, allowed))
    if len(types) == 2 and types[0] == types[1] and types[0] in allowed:
        errs.append(duplicate(f"{path}.policyTypes[1]", types[1]))
    return errs


# --- core kinds ---------------------------------------------------------------------------


def _validate_container_ports(ports: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, port in _dicts(_as_list(ports)):
        ppath = f"{path}[{i}]"
        name = port.get("name") or ""
        if name:
            msgs = is_valid_port_name(str(name))
            if msgs:
                errs.extend(invalid(f"{ppath}.name", name, m) for m in msgs)
            elif name in names:
                errs.append(duplicate(f"{ppath}.name", name))
            else:
                names.add(name)
        cport = port.get("containerPort")
        if not cport:
            errs.append(required(f"{ppath}.containerPort", ""))
        elif _int(cport) is None:
            errs.append(invalid(f"{ppath}.containerPort", cport, "must be an integer"))
        else:
            errs.extend(
                invalid(f"{ppath}.containerPort", cport, m) for m in is_valid_port_num(cport)
            )
        hport = port.get("hostPort")
        if hport:
            if _int(hport) is None:
                errs.append(invalid(f"{ppath}.hostPort", hport, "must be an integer"))
            else:
                errs.extend(
                    invalid(f"{ppath}.hostPort", hport, m) for m in is_valid_port_num(hport)
                )
        errs.extend(_protocol(port.get("protocol"), f"{ppath}.protocol"))
    return errs


def _validate_containers(
    containers: Any, path: str, seen: set[str], *, need_one: bool
) -> list[FieldError]:
    errs: list[FieldError] = []
    items = _as_list(containers)
    if need_one and not items:
        return [required(path, "")]
    for i, ctr in _dicts(items):
        cpath = f"{path}[{i}]"
        name = ctr.get("name") or ""
        if not name:
            errs.append(required(f"{cpath}.name", ""))
        else:
            errs.extend(invalid(f"{cpath}.name", name, m) for m in is_dns1123_label(str(name)))
            if str(name) in seen:
                errs.append(duplicate(f"{cpath}.name", name))
            seen.add(str(name))
        if not ctr.get("image"):
            errs.append(required(f"{cpath}.image", ""))
        errs.extend(_validate_container_ports(ctr.get("ports"), f"{cpath}.ports"))
        for j, env in enumerate(_as_list(ctr.get("env"))):
            if not _as_dict(env).get("name"):
                errs.append(required(f"{cpath}.env[{j}].name", ""))
    return errs


def validate_pod_spec(spec: Any, path: str = "spec") -> list[FieldError]:
    if not isinstance(spec, dict):
        return [required(path, "")]
    errs: list[FieldError] = []
    seen: set[str] = set()
    errs.extend(
        _validate_containers(spec.get("containers"), f"{path}.containers", seen, need_one=True)
    )
    errs.extend(
        _validate_containers(
            spec.get("initContainers"), f"{path}.initContainers", seen, need_one=False
        )
    )
    volumes: set[str] = set()
    for i, vol in enumerate(_as_list(spec.get("volumes"))):
        vpath = f"{path}.volumes[{i}]"
        name = _as_dict(vol).get("name") or ""
        if not name:
            errs.append(required(f"{vpath}.name", ""))
            continue
        errs.extend(invalid(f"{vpath}.name", name, m) for m in is_dns1123_label(str(name)))
        if name in volumes:
            errs.append(duplicate(f"{vpath}.name", name))
        volumes.add(name)
    policies = {
        "restartPolicy": ("Always", "OnFailure", "Never"),
        "dnsPolicy": ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"),
    }
    for key, allowed in policies.items():
        value = spec.get(key)
        if value is not None and value not in allowed:
            errs.append(not_supported(f"{path}.{key}", value, sorted(allowed)))
    node = spec.get("nodeName")
    if node:
        errs.extend(invalid(f"{path}.nodeName", node, m) for m in is_dns1123_subdomain(str(node)))
    return errs


_POD_MUTABLE = (
    "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
    "`spec.tolerations` (only additions to existing tolerations),"
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"
)


def _pod_spec_masked(spec: JSON) -> JSON:
    out = dict(spec)
    for key in ("containers", "initContainers"):
        out[key] = [
            {k: v for k, v in _as_dict(c).items() if k != "image"} for c in _as_list(out.get(key))
        ]
    for key in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"):
        out.pop(key, None)
    return out


def _validate_pod_update(new: JSON, old: JSON) -> list[FieldError]:
    nspec, ospec = _as_dict(new.get("spec")), _as_dict(old.get("spec"))
    errs: list[FieldError] = []
    if _pod_spec_masked(nspec) != _pod_spec_masked(ospec):
        errs.append(
            forbidden("spec", f"pod updates may not change fields other than {_POD_MUTABLE}")
        )
    old_tol = _as_list(ospec.get("tolerations"))
    new_tol = _as_list(nspec.get("tolerations"))
    if any(t not in new_tol for t in old_tol):
        errs.append(
            forbidden(
                "spec.tolerations",
                "existing toleration can not be modified except its tolerationSeconds",
            )
        )
    return errs


def _validate_pod(obj: JSON, old: JSON | None) -> list[FieldError]:
    errs = validate_pod_spec(obj.get("spec"))
    if old is not None:
        errs.extend(_validate_pod_update(obj, old))
    return errs


def _validate_namespace(obj: JSON, old: JSON | None) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, fin in enumerate(_as_list(_as_dict(obj.get("spec")).get("finalizers"))):
        errs.extend(invalid(f"spec.finalizers[{i}]", fin, m) for m in is_qualified_name(str(fin)))
    return errs


def _validate_node(obj: JSON, old: JSON | None) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = _as_dict(obj.get("spec"))
    cidr = spec.get("podCIDR")
    if cidr:
        errs.extend(invalid("spec.podCIDR", cidr, m) for m in is_valid_cidr(str(cidr)))
    cidrs = _as_list(spec.get("podCIDRs"))
    for i, value in enumerate(cidrs):
        errs.extend(invalid(f"spec.podCIDRs[{i}]", value, m) for m in is_valid_cidr(str(value)))
    if len(cidrs) > 2:
        errs.append(
            invalid("spec.podCIDRs", cidrs, "may specify no more than one CIDR for each IP family")
        )
    for i, taint in _dicts(_as_list(spec.get("taints"))):
        tpath = f"spec.taints[{i}]"
        key = str(taint.get("key") or "")
        errs.extend(invalid(f"{tpath}.key", key, m) for m in is_qualified_name(key))
        effects = ("NoExecute", "NoSchedule", "PreferNoSchedule")
        if taint.get("effect") not in effects:
            if not taint.get("effect"):
                errs.append(required(f"{tpath}.effect", ""))
            else:
                errs.append(not_supported(f"{tpath}.effect", taint.get("effect"), effects))
    for i, addr in enumerate(_as_list(_as_dict(obj.get("status")).get("addresses"))):
        if not _as_dict(addr).get("type"):
            errs.append(required(f"status.addresses[{i}].type", ""))
    if old is not None:
        ospec = _as_dict(old.get("spec"))
        for key in ("podCIDR", "podCIDRs"):
            if ospec.get(key) and ospec.get(key) != spec.get(key):
                errs.append(
                    forbidden(
                        "spec.podCIDRs",
                        'node updates may not change podCIDR except from "" to valid',
                    )
                )
                break
    return errs


def _validate_service(obj: JSON, old: JSON | None) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = _as_dict(obj.get("spec"))
    stype = spec.get("type", "ClusterIP")
    types = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
    if stype not in types:
        errs.append(not_supported("spec.type", stype, types))
    ports = _as_list(spec.get("ports"))
    headless = spec.get("clusterIP") == "None"
    if not ports and stype != "ExternalName" and not headless:
        errs.append(required("spec.ports", ""))
    names: set[str] = set()
    for i, port in _dicts(ports):
        ppath = f"spec.ports[{i}]"
        name = port.get("name") or ""
        if len(ports) > 1 and not name:
            errs.append(required(f"{ppath}.name", ""))
        elif name:
            errs.extend(invalid(f"{ppath}.name", name, m) for m in is_dns1123_label(str(name)))
            if name in names:
                errs.append(duplicate(f"{ppath}.name", name))
            names.add(name)
        num = _int(port.get("port"))
        if num is None:
            errs.append(required(f"{ppath}.port", ""))
        else:
            errs.extend(invalid(f"{ppath}.port", num, m) for m in is_valid_port_num(num))
        errs.extend(_protocol(port.get("protocol"), f"{ppath}.protocol"))
        target = port.get("targetPort")
        if isinstance(target, str):
            errs.extend(
                invalid(f"{ppath}.targetPort", target, m) for m in is_valid_port_name(target)
            )
        elif target is not None:
            tnum = _int(target)
            if tnum is None:
                errs.append(
                    invalid(f"{ppath}.targetPort", target, "must be an integer or a string")
                )
            else:
                errs.extend(
                    invalid(f"{ppath}.targetPort", tnum, m) for m in is_valid_port_num(tnum)
                )
    cluster_ip = spec.get("clusterIP")
    if cluster_ip not in (None, "", "None"):
        errs.extend(invalid("spec.clusterIP", cluster_ip, m) for m in is_valid_ip(str(cluster_ip)))
    if old is not None:
        old_ip = _as_dict(old.get("spec")).get("clusterIP")
        if old_ip and cluster_ip and old_ip != cluster_ip:
            errs.append(invalid("spec.clusterIP", cluster_ip, "field is immutable"))
    return errs


def _validate_endpoints(obj: JSON, old: JSON | None) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, subset in _dicts(_as_list(obj.get("subsets"))):
        spath = f"subsets[{i}]"
        addrs = _as_list(subset.get("addresses")) + _as_list(subset.get("notReadyAddresses"))
        for j, addr in enumerate(_as_list(subset.get("addresses"))):
            ip = _as_dict(addr).get("ip") or ""
            errs.extend(invalid(f"{spath}.addresses[{j}].ip", ip, m) for m in is_valid_ip(str(ip)))
        for j, addr in enumerate(_as_list(subset.get("notReadyAddresses"))):
            ip = _as_dict(addr).get("ip") or ""
            errs.extend(
                invalid(f"{spath}.notReadyAddresses[{j}].ip", ip, m) for m in is_valid_ip(str(ip))
            )
        if not addrs:
            errs.append(required(f"{spath}", "must specify `addresses` or `notReadyAddresses`"))
        ports = _as_list(subset.get("ports"))
        for j, port in _dicts(ports):
            ppath = f"{spath}.ports[{j}]"
            name = port.get("name") or ""
            if len(ports) > 1 and not name:
                errs.append(required(f"{ppath}.name", ""))
            elif name:
                errs.extend(invalid(f"{ppath}.name", name, m) for m in is_dns1123_label(str(name)))
            num = _int(port.get("port"))
            if num is None:
                errs.append(required(f"{ppath}.port", ""))
            else:
                errs.extend(invalid(f"{ppath}.port", num, m) for m in is_valid_port_num(num))
            errs.extend(_protocol(port.get("protocol"), f"{ppath}.protocol"))
    return errs


def _validate_data_keys(obj: JSON, *, binary_key: str) -> list[FieldError]:
    errs: list[FieldError] = []
    data = _as_dict(obj.get("data"))
    binary = _as_dict(obj.get(binary_key))
    for key in data:
        errs.extend(invalid(f"data[{key}]", key, m) for m in is_config_map_key(str(key)))
    for key in binary:
        errs.extend(invalid(f"{binary_key}[{key}]", key, m) for m in is_config_map_key(str(key)))
        if key in data and binary_key == "binaryData":
            errs.append(invalid(f"binaryData[{key}]", key, "duplicate of key present in data"))
    size = sum(len(str(k)) + len(str(v)) for d in (data, binary) for k, v in d.items())
    if size > CONFIG_MAP_SIZE_LIMIT:
        errs.append(FieldError("", TOO_LONG, f"may not be more than {CONFIG_MAP_SIZE_LIMIT} bytes"))
    return errs


def _validate_immutable_data(obj: JSON, old: JSON | None) -> list[FieldError]:
    if old is None or not old.get("immutable"):
        return []
    errs: list[FieldError] = []
    for key in ("data", "binaryData", "stringData"):
        if key in obj and obj.get(key) != old.get(key):
            errs.append(forbidden(key, "field is immutable when `immutable` is set"))
    if not obj.get("immutable"):
        errs.append(forbidden("immutable", "field is immutable when `immutable` is set"))
    return errs


def _validate_configmap(obj: JSON, old: JSON | None) -> list[FieldError]:
    return _validate_data_keys(obj, binary_key="binaryData") + _validate_immutable_data(obj, old)


def _validate_secret(obj: JSON, old: JSON | None) -> list[FieldError]:
    errs = _validate_data_keys(obj, binary_key="stringData")
    errs.extend(_validate_immutable_data(obj, old))
    if old is not None and (obj.get("type") or "Opaque") != (old.get("type") or "Opaque"):
        errs.append(invalid("type", obj.get("type"), "field is immutable"))
    return errs


def _validate_lease(obj: JSON, old: JSON | None) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = _as_dict(obj.get("spec"))
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and (_int(duration) is None or duration <= 0):
        errs.append(invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    transitions = spec.get("leaseTransitions")
    if transitions is not None and (_int(transitions) is None or transitions < 0):
        errs.append(
            invalid("spec.leaseTransitions", transitions, "must be greater than or equal to 0")
        )
    return errs


def _validate_network_policy(obj: JSON, old: JSON | None) -> list[FieldError]:
    return validate_network_policy_spec(obj.get("spec"))


def _validate_crd(obj: JSON, old: JSON | None) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec", "")]
    group = str(spec.get("group") or "")
    names = _as_dict(spec.get("names"))
    plural = str(names.get("plural") or "")
    name = str(_as_dict(obj.get("metadata")).get("name") or "")
    if name != f"{plural}.{group}":
        errs.append(invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    if not group:
        errs.append(required("spec.group", ""))
    else:
        errs.extend(invalid("spec.group", group, m) for m in is_dns1123_subdomain(group))
        if "." not in group:
            errs.append(invalid("spec.group", group, "should be a domain with at least one dot"))
    for key in ("plural", "singular"):
        value = str(names.get(key) or "")
        if not value:
            if key == "plural":
                errs.append(required(f"spec.names.{key}", ""))
            continue
        msgs = is_dns1035_label(value)
        if msgs:
            errs.append(invalid(f"spec.names.{key}", value, ",".join(msgs)))
    for key in ("kind", "listKind"):
        if not names.get(key):
            errs.append(required(f"spec.names.{key}", ""))
    scope = spec.get("scope")
    if scope not in ("Cluster", "Namespaced"):
        if not scope:
            errs.append(required("spec.scope", ""))
        else:
            errs.append(not_supported("spec.scope", scope, ("Cluster", "Namespaced")))
    versions = _as_list(spec.get("versions"))
    if not versions:
        errs.append(
            invalid(
                "spec.versions", versions, "must have exactly one version marked as storage version"
            )
        )
    storage = 0
    seen: set[str] = set()
    for i, version in _dicts(versions):
        vpath = f"spec.versions[{i}]"
        vname = str(version.get("name") or "")
        if not vname:
            errs.append(required(f"{vpath}.name", ""))
        else:
            errs.extend(invalid(f"{vpath}.name", vname, m) for m in is_dns1035_label(vname))
            if vname in seen:
                errs.append(duplicate(f"{vpath}.name", vname))
            seen.add(vname)
        if version.get("storage"):
            storage += 1
        if not isinstance(_as_dict(version.get("schema")).get("openAPIV3Schema"), dict):
            errs.append(required(f"{vpath}.schema.openAPIV3Schema", "schemas are required"))
    if versions and storage != 1:
        errs.append(
            invalid(
                "spec.versions",
                [str(_as_dict(v).get("name")) for v in versions],
                "must have exactly one version marked as storage version",
            )
        )
    if old is not None:
        ospec = _as_dict(old.get("spec"))
        if ospec.get("group") and ospec.get("group") != group:
            errs.append(invalid("spec.group", group, "field is immutable"))
        oplural = _as_dict(ospec.get("names")).get("plural")
        if oplural and oplural != plural:
            errs.append(invalid("spec.names.plural", plural, "field is immutable"))
    return errs


def _no_checks(obj: JSON, old: JSON | None) -> list[FieldError]:
    return []


_KindFn = Callable[[JSON, "JSON | None"], list[FieldError]]


@dataclass(frozen=True)
class _KindRules:
    name_fn: _NameFn
    namespaced: bool
    check: _KindFn
    meta: bool = True


_CORE = ""
_RULES: dict[tuple[str, str], _KindRules] = {
    (_CORE, "Pod"): _KindRules(is_dns1123_subdomain, True, _validate_pod),
    (_CORE, "Namespace"): _KindRules(is_dns1123_label, False, _validate_namespace),
    (_CORE, "Node"): _KindRules(is_dns1123_subdomain, False, _validate_node),
    (_CORE, "Service"): _KindRules(is_dns1035_label, True, _validate_service),
    (_CORE, "Endpoints"): _KindRules(is_dns1123_subdomain, True, _validate_endpoints),
    (_CORE, "ServiceAccount"): _KindRules(is_dns1123_subdomain, True, _no_checks),
    (_CORE, "ConfigMap"): _KindRules(is_dns1123_subdomain, True, _validate_configmap),
    (_CORE, "Secret"): _KindRules(is_dns1123_subdomain, True, _validate_secret),
    (_CORE, "Event"): _KindRules(is_dns1123_subdomain, True, _no_checks),
    ("networking.k8s.io", "NetworkPolicy"): _KindRules(
        is_dns1123_subdomain, True, _validate_network_policy
    ),
    ("coordination.k8s.io", "Lease"): _KindRules(is_dns1123_subdomain, True, _validate_lease),
    ("apiextensions.k8s.io", "CustomResourceDefinition"): _KindRules(
        is_dns1123_subdomain, False, _validate_crd
    ),
    ("authentication.k8s.io", "TokenReview"): _KindRules(
        is_dns1123_subdomain, False, _no_checks, meta=False
    ),
}


def validate(group: str, kind: str, obj: JSON, old: JSON | None) -> list[FieldError]:
    """Every problem kube-apiserver would report for creating (``old`` None) or updating
    ``obj``; an empty list means valid. Unknown kinds are custom resources: metadata only."""
    rules = _RULES.get((group, kind))
    if rules is None:
        errs = validate_object_meta(obj, name_fn=is_path_segment_name, namespaced=None)
        if old is not None:
            errs.extend(validate_object_meta_update(obj, old))
        return errs
    errs = []
    if rules.meta:
        errs.extend(validate_object_meta(obj, name_fn=rules.name_fn, namespaced=rules.namespaced))
        if old is not None:
            errs.extend(validate_object_meta_update(obj, old))
    errs.extend(rules.check(obj, old))
    return errs


def is_valid_object(group: str, kind: str, obj: Mapping[str, Any]) -> bool:
    """Convenience for clients (the lab) that only need a yes/no before writing."""
    return not validate(group, kind, dict(obj), None)
