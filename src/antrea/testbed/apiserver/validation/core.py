"""Core kinds (Pod, Namespace, Node, Service, Endpoints, ConfigMap, Secret) and Lease.

The checks that catch real mistakes (names, ports, protocols, immutable fields), not every rule
upstream has for features this project does not serve.
"""

from __future__ import annotations

from typing import Any

from antrea.k8s.names import (
    is_config_map_key,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    is_valid_cidr,
    is_valid_ip,
    is_valid_port_name,
    is_valid_port_num,
)
from antrea.testbed.apiserver.validation.common import PROTOCOLS, as_dict, as_list, dicts, int_value
from antrea.testbed.apiserver.validation.errors import (
    JSON,
    TOO_LONG,
    FieldError,
    duplicate,
    forbidden,
    invalid,
    not_supported,
    required,
)

_SORTED_PROTOCOLS = sorted(PROTOCOLS)
CONFIG_MAP_SIZE_LIMIT = 1024 * 1024


def _protocol(value: Any, path: str) -> list[FieldError]:
    if value is None or value in PROTOCOLS:
        return []
    return [not_supported(path, value, _SORTED_PROTOCOLS)]


def _validate_container_ports(ports: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, port in dicts(as_list(ports)):
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
        elif int_value(cport) is None:
            errs.append(invalid(f"{ppath}.containerPort", cport, "must be an integer"))
        else:
            errs.extend(
                invalid(f"{ppath}.containerPort", cport, m) for m in is_valid_port_num(cport)
            )
        hport = port.get("hostPort")
        if hport:
            if int_value(hport) is None:
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
    items = as_list(containers)
    if need_one and not items:
        return [required(path, "")]
    for i, ctr in dicts(items):
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
        for j, env in enumerate(as_list(ctr.get("env"))):
            if not as_dict(env).get("name"):
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
    for i, vol in enumerate(as_list(spec.get("volumes"))):
        vpath = f"{path}.volumes[{i}]"
        name = as_dict(vol).get("name") or ""
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
            {k: v for k, v in as_dict(c).items() if k != "image"} for c in as_list(out.get(key))
        ]
    for key in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"):
        out.pop(key, None)
    return out


def _validate_pod_update(new: JSON, old: JSON) -> list[FieldError]:
    nspec, ospec = as_dict(new.get("spec")), as_dict(old.get("spec"))
    errs: list[FieldError] = []
    if _pod_spec_masked(nspec) != _pod_spec_masked(ospec):
        errs.append(
            forbidden("spec", f"pod updates may not change fields other than {_POD_MUTABLE}")
        )
    old_tol = as_list(ospec.get("tolerations"))
    new_tol = as_list(nspec.get("tolerations"))
    if any(t not in new_tol for t in old_tol):
        errs.append(
            forbidden(
                "spec.tolerations",
                "existing toleration can not be modified except its tolerationSeconds",
            )
        )
    return errs


def validate_pod(obj: JSON, old: JSON | None) -> list[FieldError]:
    errs = validate_pod_spec(obj.get("spec"))
    if old is not None:
        errs.extend(_validate_pod_update(obj, old))
    return errs


def validate_namespace(obj: JSON, old: JSON | None) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, fin in enumerate(as_list(as_dict(obj.get("spec")).get("finalizers"))):
        errs.extend(invalid(f"spec.finalizers[{i}]", fin, m) for m in is_qualified_name(str(fin)))
    return errs


def validate_node(obj: JSON, old: JSON | None) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = as_dict(obj.get("spec"))
    cidr = spec.get("podCIDR")
    if cidr:
        errs.extend(invalid("spec.podCIDR", cidr, m) for m in is_valid_cidr(str(cidr)))
    cidrs = as_list(spec.get("podCIDRs"))
    for i, value in enumerate(cidrs):
        errs.extend(invalid(f"spec.podCIDRs[{i}]", value, m) for m in is_valid_cidr(str(value)))
    if len(cidrs) > 2:
        errs.append(
            invalid("spec.podCIDRs", cidrs, "may specify no more than one CIDR for each IP family")
        )
    for i, taint in dicts(as_list(spec.get("taints"))):
        tpath = f"spec.taints[{i}]"
        key = str(taint.get("key") or "")
        errs.extend(invalid(f"{tpath}.key", key, m) for m in is_qualified_name(key))
        effects = ("NoExecute", "NoSchedule", "PreferNoSchedule")
        if taint.get("effect") not in effects:
            if not taint.get("effect"):
                errs.append(required(f"{tpath}.effect", ""))
            else:
                errs.append(not_supported(f"{tpath}.effect", taint.get("effect"), effects))
    for i, addr in enumerate(as_list(as_dict(obj.get("status")).get("addresses"))):
        if not as_dict(addr).get("type"):
            errs.append(required(f"status.addresses[{i}].type", ""))
    if old is not None:
        ospec = as_dict(old.get("spec"))
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


def _validate_named_port(
    port: JSON, path: str, *, several: bool, seen: set[str] | None = None
) -> list[FieldError]:
    """Name, number and protocol of a Service or Endpoints port.

    A name is required once there are several ports; with ``seen`` (Service ports) names must
    also be unique.
    """
    errs: list[FieldError] = []
    name = port.get("name") or ""
    if several and not name:
        errs.append(required(f"{path}.name", ""))
    elif name:
        errs.extend(invalid(f"{path}.name", name, m) for m in is_dns1123_label(str(name)))
        if seen is not None:
            if name in seen:
                errs.append(duplicate(f"{path}.name", name))
            seen.add(name)
    num = int_value(port.get("port"))
    if num is None:
        errs.append(required(f"{path}.port", ""))
    else:
        errs.extend(invalid(f"{path}.port", num, m) for m in is_valid_port_num(num))
    errs.extend(_protocol(port.get("protocol"), f"{path}.protocol"))
    return errs


def validate_service(obj: JSON, old: JSON | None) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = as_dict(obj.get("spec"))
    stype = spec.get("type", "ClusterIP")
    types = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
    if stype not in types:
        errs.append(not_supported("spec.type", stype, types))
    ports = as_list(spec.get("ports"))
    headless = spec.get("clusterIP") == "None"
    if not ports and stype != "ExternalName" and not headless:
        errs.append(required("spec.ports", ""))
    names: set[str] = set()
    for i, port in dicts(ports):
        ppath = f"spec.ports[{i}]"
        errs.extend(_validate_named_port(port, ppath, several=len(ports) > 1, seen=names))
        target = port.get("targetPort")
        if isinstance(target, str):
            errs.extend(
                invalid(f"{ppath}.targetPort", target, m) for m in is_valid_port_name(target)
            )
        elif target is not None:
            tnum = int_value(target)
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
        old_ip = as_dict(old.get("spec")).get("clusterIP")
        if old_ip and cluster_ip and old_ip != cluster_ip:
            errs.append(invalid("spec.clusterIP", cluster_ip, "field is immutable"))
    return errs


def validate_endpoints(obj: JSON, old: JSON | None) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, subset in dicts(as_list(obj.get("subsets"))):
        spath = f"subsets[{i}]"
        any_address = False
        for key in ("addresses", "notReadyAddresses"):
            for j, addr in enumerate(as_list(subset.get(key))):
                any_address = True
                ip = as_dict(addr).get("ip") or ""
                errs.extend(invalid(f"{spath}.{key}[{j}].ip", ip, m) for m in is_valid_ip(str(ip)))
        if not any_address:
            errs.append(required(f"{spath}", "must specify `addresses` or `notReadyAddresses`"))
        ports = as_list(subset.get("ports"))
        for j, port in dicts(ports):
            errs.extend(_validate_named_port(port, f"{spath}.ports[{j}]", several=len(ports) > 1))
    return errs


def _validate_data_keys(obj: JSON, *, binary_key: str) -> list[FieldError]:
    errs: list[FieldError] = []
    data = as_dict(obj.get("data"))
    binary = as_dict(obj.get(binary_key))
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


def validate_configmap(obj: JSON, old: JSON | None) -> list[FieldError]:
    return _validate_data_keys(obj, binary_key="binaryData") + _validate_immutable_data(obj, old)


def validate_secret(obj: JSON, old: JSON | None) -> list[FieldError]:
    errs = _validate_data_keys(obj, binary_key="stringData")
    errs.extend(_validate_immutable_data(obj, old))
    if old is not None and (obj.get("type") or "Opaque") != (old.get("type") or "Opaque"):
        errs.append(invalid("type", obj.get("type"), "field is immutable"))
    return errs


def validate_lease(obj: JSON, old: JSON | None) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = as_dict(obj.get("spec"))
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and (int_value(duration) is None or duration <= 0):
        errs.append(invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    transitions = spec.get("leaseTransitions")
    if transitions is not None and (int_value(transitions) is None or transitions < 0):
        errs.append(
            invalid("spec.leaseTransitions", transitions, "must be greater than or equal to 0")
        )
    return errs
