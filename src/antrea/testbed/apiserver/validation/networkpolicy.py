"""NetworkPolicy, validated in full (``networking/validation``): it is the product's input."""

from __future__ import annotations

from typing import Any

from antrea.k8s.names import (
    cidr_ok,
    is_valid_cidr,
    is_valid_port_name,
    is_valid_port_num,
    parse_cidr,
)
from antrea.testbed.apiserver.validation.common import PROTOCOLS, as_dict, as_list, dicts, int_value
from antrea.testbed.apiserver.validation.errors import (
    JSON,
    FieldError,
    duplicate,
    forbidden,
    invalid,
    not_supported,
    required,
)
from antrea.testbed.apiserver.validation.metadata import validate_label_selector


def _validate_np_port(port: JSON, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if port.get("protocol") is not None and port["protocol"] not in PROTOCOLS:
        errs.append(not_supported(f"{path}.protocol", port["protocol"], PROTOCOLS))
    value = port.get("port")
    end = port.get("endPort")
    if value is not None:
        num = int_value(value)
        if num is not None:
            errs.extend(invalid(f"{path}.port", num, m) for m in is_valid_port_num(num))
            if end is not None:
                end_num = int_value(end)
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
    excepts = as_list(ipb.get("except"))
    if errs or not excepts:
        return errs
    net = parse_cidr(str(cidr))
    assert net is not None  # is_valid_cidr took it
    for i, exc in enumerate(excepts):
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


def _plain_valid_ip_block(peer: Any) -> bool:
    """``{"ipBlock": {"cidr": <valid CIDR>}}`` exactly: a peer `_validate_np_peer` passes."""
    if type(peer) is not dict or len(peer) != 1:
        return False
    block = peer.get("ipBlock")
    if type(block) is not dict or len(block) != 1:
        return False
    cidr = block.get("cidr")
    return type(cidr) is str and cidr_ok(cidr)


def _validate_np_peer(peer: JSON, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    count = 0
    for key in ("podSelector", "namespaceSelector"):
        if peer.get(key) is not None:
            count += 1
            errs.extend(validate_label_selector(peer[key], f"{path}.{key}"))
    if peer.get("ipBlock") is not None:
        count += 1
        errs.extend(_validate_ip_block(as_dict(peer["ipBlock"]), f"{path}.ipBlock"))
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
        for i, rule in dicts(as_list(spec.get(direction))):
            if len(rule) == 1:  # peers only, no ports: the bulk of large policies
                peers = rule.get(peers_key)
                if type(peers) is list and all(map(_plain_valid_ip_block, peers)):
                    continue
            ports, peers = as_list(rule.get("ports")), as_list(rule.get(peers_key))
            if not ports and all(_plain_valid_ip_block(p) for p in peers):
                continue  # the bulk of large policies: nothing to report, no path to build
            rpath = f"{path}.{direction}[{i}]"
            for j, port in enumerate(ports):
                errs.extend(_validate_np_port(as_dict(port), f"{rpath}.ports[{j}]"))
            for j, peer in enumerate(peers):
                errs.extend(_validate_np_peer(as_dict(peer), f"{rpath}.{peers_key}[{j}]"))
    types = as_list(spec.get("policyTypes"))
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


def validate_network_policy(obj: JSON, old: JSON | None) -> list[FieldError]:
    return validate_network_policy_spec(obj.get("spec"))
