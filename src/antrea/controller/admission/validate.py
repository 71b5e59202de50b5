"""Admission checks for the Antrea-native policy objects (crd.antrea.io/v1beta1).

Pure functions over the decoded JSON objects, in the spirit of upstream Antrea's validating
webhook: each returns the `Refusal`s of an object (empty: admitted). A refusal names the field
path, so the API server's answer points at the offending field
(``spec.ingress[1].name: rules names must be unique within the policy``). What the checks need
to know about other objects (existing tiers, the policies of a tier, child groups) comes in as
plain arguments, so they stay testable without a cluster.

Schema-level constraints (types, enums, ranges) are the CRD's OpenAPI schema's business; the
few that decide admission here (priority range, tier priority range) are checked again so a
manifest without the schema cannot slip past.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from antrea.k8s.names import is_qualified_name, is_valid_label_value, parse_cidr

JSON = dict[str, Any]

STATIC_TIERS: Mapping[str, int] = {
    "emergency": 50,
    "securityops": 100,
    "networkops": 150,
    "platform": 200,
    "application": 250,
    "baseline": 253,
}
DEFAULT_TIER = "application"
BASELINE_TIER = "baseline"
# Reserved around the default and baseline tiers (250 and 253 belong to them).
RESERVED_TIER_PRIORITIES = frozenset({251, 252, 254, 255})
MAX_TIERS = 20
POLICY_PRIORITY_RANGE = (1.0, 10000.0)
TIER_PRIORITY_RANGE = (1, 255)
ACTIONS = ("Allow", "Drop", "Reject", "Pass")
CONTROLLER_USER = "system:serviceaccount:kube-system:antrea-controller"

# The fields of an ACNP/ANNP peer and appliedTo entry (upstream's struct fields).
PEER_FIELDS = (
    "podSelector",
    "namespaceSelector",
    "namespaces",
    "ipBlock",
    "group",
    "fqdn",
    "externalEntitySelector",
    "serviceAccount",
    "nodeSelector",
    "scope",
)
APPLIED_TO_FIELDS = (
    "podSelector",
    "namespaceSelector",
    "externalEntitySelector",
    "group",
    "serviceAccount",
    "service",
    "nodeSelector",
)
GROUP_SPEC_FIELDS = (
    "podSelector",
    "namespaceSelector",
    "ipBlock",
    "ipBlocks",
    "serviceReference",
    "externalEntitySelector",
    "childGroups",
)


@dataclass(frozen=True, slots=True)
class Refusal:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def _set(value: Any) -> bool:
    """Go's "field is not its zero value" for decoded JSON."""
    return value not in (None, "", [], {}, False, 0)


def _fields_set(obj: Mapping[str, Any], fields: Iterable[str]) -> list[str]:
    return [f for f in fields if f in obj and obj[f] is not None and obj[f] != ""]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


# --- shared pieces -------------------------------------------------------------------------


def check_selector_labels(path: str, selector: Any) -> list[Refusal]:
    out: list[Refusal] = []
    for key, value in _dict(_dict(selector).get("matchLabels")).items():
        errs = is_qualified_name(str(key))
        if errs:
            out.append(
                Refusal(f"{path}.matchLabels", f"Invalid label key: {key}: {'; '.join(errs)}")
            )
        errs = is_valid_label_value(str(value)) if isinstance(value, str) else ["must be a string"]
        if errs:
            out.append(
                Refusal(f"{path}.matchLabels", f"Invalid label value: {value}: {'; '.join(errs)}")
            )
    return out


def check_ip_block(path: str, block: Any) -> list[Refusal]:
    block = _dict(block)
    cidr = block.get("cidr")
    if not cidr:
        return [Refusal(f"{path}.cidr", "field 'cidr' is required in an ipBlock")]
    net = parse_cidr(str(cidr))
    if net is None:
        return [Refusal(f"{path}.cidr", f"invalid CIDR address: {cidr}")]
    out: list[Refusal] = []
    for i, exc in enumerate(_list(block.get("except"))):
        sub = parse_cidr(str(exc))
        where = f"{path}.except[{i}]"
        if sub is None:
            out.append(Refusal(where, f"invalid except CIDR value: invalid CIDR address: {exc}"))
            continue
        if (
            sub.version != net.version
            or sub.network_address not in net
            or sub.prefixlen <= net.prefixlen
        ):
            out.append(Refusal(where, f"except CIDR {exc} is not a strict subset of CIDR {cidr}"))
    return out


def _is_multicast(cidr: str) -> bool:
    net = parse_cidr(cidr)
    return net is not None and net.network_address.is_multicast


# --- ACNP / ANNP ---------------------------------------------------------------------------


def _rules(spec: JSON) -> list[tuple[str, JSON]]:
    out: list[tuple[str, JSON]] = []
    for direction in ("ingress", "egress"):
        for i, rule in enumerate(_list(spec.get(direction))):
            out.append((f"spec.{direction}[{i}]", _dict(rule)))
    return out


def validate_policy(obj: JSON, tiers: Mapping[str, int], *, cluster: bool) -> list[Refusal]:
    """Checks of an ACNP (``cluster``) or ANNP on create and update."""
    spec = _dict(obj.get("spec"))
    out: list[Refusal] = []
    out += _check_priority(spec)
    tier = spec.get("tier") or ""
    if tier and tier not in STATIC_TIERS and tier not in tiers:
        out.append(Refusal("spec.tier", f"tier {tier} does not exist"))
    rules = _rules(spec)
    if str(tier).lower() == BASELINE_TIER:
        for path, rule in rules:
            if rule.get("action") == "Pass":
                out.append(
                    Refusal(
                        f"{path}.action",
                        "`Pass` action should not be set for Baseline Tier policy rules",
                    )
                )
    seen: set[str] = set()
    for path, rule in rules:
        name = rule.get("name") or ""
        if name in seen:
            out.append(Refusal(f"{path}.name", "rules names must be unique within the policy"))
        seen.add(name)
    out += _check_applied_to(spec, rules)
    for path, rule in rules:
        out += _check_rule(path, rule, cluster=cluster)
    return out


def _check_priority(spec: JSON) -> list[Refusal]:
    prio = spec.get("priority")
    lo, hi = POLICY_PRIORITY_RANGE
    if prio is None:
        return [Refusal("spec.priority", "Required value")]
    if isinstance(prio, bool) or not isinstance(prio, int | float) or not lo <= prio <= hi:
        return [Refusal("spec.priority", f"priority {prio} is out of range [{lo:g}, {hi:g}]")]
    return []


def _check_applied_to(spec: JSON, rules: Sequence[tuple[str, JSON]]) -> list[Refusal]:
    in_spec = bool(_list(spec.get("appliedTo")))
    with_rule_level = [path for path, rule in rules if _list(rule.get("appliedTo"))]
    if in_spec and with_rule_level:
        return [
            Refusal(
                f"{with_rule_level[0]}.appliedTo",
                "appliedTo should not be set in both spec and rules",
            )
        ]
    if not in_spec and not with_rule_level:
        return [Refusal("spec.appliedTo", "appliedTo needs to be set in either spec or rules")]
    if with_rule_level and len(with_rule_level) != len(rules):
        missing = next(path for path, rule in rules if not _list(rule.get("appliedTo")))
        return [
            Refusal(
                f"{missing}.appliedTo",
                "appliedTo field should either be set in all rules or in none of them",
            )
        ]
    has_egress = any(path.startswith("spec.egress") for path, _ in rules)
    out = _check_applied_to_list("spec.appliedTo", spec.get("appliedTo"), egress=has_egress)
    for path, rule in rules:
        out += _check_applied_to_list(
            f"{path}.appliedTo", rule.get("appliedTo"), egress=path.startswith("spec.egress")
        )
    return out


def _check_applied_to_list(path: str, entries: Any, *, egress: bool) -> list[Refusal]:
    out: list[Refusal] = []
    services = 0
    items = _list(entries)
    for i, entry in enumerate(items):
        where = f"{path}[{i}]"
        entry = _dict(entry)  # noqa: PLW2901
        fields = _fields_set(entry, APPLIED_TO_FIELDS)
        if not fields:
            out.append(
                Refusal(where, "an appliedTo entry must set one of " + ", ".join(APPLIED_TO_FIELDS))
            )
        for single in ("group", "nodeSelector", "serviceAccount", "service"):
            if single in fields and len(fields) > 1:
                out.append(Refusal(where, f"{single} cannot be set with other peers in appliedTo"))
        if "service" in fields:
            services += 1
            if egress:
                out.append(Refusal(f"{where}.service", "egress rule cannot be applied to Services"))
        for sel in ("podSelector", "namespaceSelector", "externalEntitySelector", "nodeSelector"):
            out += check_selector_labels(f"{where}.{sel}", entry.get(sel))
    if 0 < services < len(items):
        out.append(
            Refusal(
                path, "a rule/policy cannot be applied to Services and other peers at the same time"
            )
        )
    return out


def _check_rule(path: str, rule: JSON, *, cluster: bool) -> list[Refusal]:
    out: list[Refusal] = []
    action = rule.get("action")
    if action not in ACTIONS:
        out.append(Refusal(f"{path}.action", f"action must be one of {', '.join(ACTIONS)}"))
    egress = path.startswith("spec.egress")
    peers_key = "to" if egress else "from"
    for i, peer in enumerate(_list(rule.get(peers_key))):
        out += _check_peer(f"{path}.{peers_key}[{i}]", _dict(peer), egress=egress, cluster=cluster)
    if egress and rule.get("toServices") is not None:  # noqa: SIM102
        if (
            _list(rule.get("to"))
            or rule.get("ports") is not None
            or rule.get("protocols") is not None
        ):
            out.append(
                Refusal(
                    f"{path}.toServices",
                    "`toServices` cannot be used with `to`, `ports` or `protocols`",
                )
            )
    if egress:
        out += _check_multicast(path, rule)
    out += _check_ports(path, rule)
    out += _check_protocols(path, rule)
    return out


def _check_peer(path: str, peer: JSON, *, egress: bool, cluster: bool) -> list[Refusal]:
    out: list[Refusal] = []
    fields = _fields_set(peer, PEER_FIELDS)
    if not fields:
        out.append(Refusal(path, "a peer must set one of " + ", ".join(PEER_FIELDS)))
    if peer.get("namespaceSelector") is not None and peer.get("namespaces") is not None:
        out.append(
            Refusal(
                path,
                "namespaces and namespaceSelector cannot be set at the same time for a single "
                "NetworkPolicyPeer",
            )
        )
    namespaces = peer.get("namespaces")
    if namespaces is not None:
        ns = _dict(namespaces)
        criteria = [k for k in ("match", "sameLabels") if _set(ns.get(k))]
        if len(criteria) > 1:
            out.append(
                Refusal(
                    f"{path}.namespaces",
                    "only one matching criteria can be specified in a single peer namespaces field",
                )
            )
        if ns.get("match") not in (None, "Self"):
            out.append(Refusal(f"{path}.namespaces.match", 'match must be "Self"'))
        for j, key in enumerate(_list(ns.get("sameLabels"))):
            if is_qualified_name(str(key)):
                out.append(
                    Refusal(
                        f"{path}.namespaces.sameLabels[{j}]",
                        f"Invalid label key in sameLabels rule: {key}",
                    )
                )
    if peer.get("ipBlock") is not None:
        out += check_ip_block(f"{path}.ipBlock", peer.get("ipBlock"))
    for single in ("group", "serviceAccount", "nodeSelector"):
        if single in fields and len(fields) > 1:
            out.append(Refusal(path, f"{single} cannot be set with other peers in rules"))
    if "fqdn" in fields:
        if not egress:
            out.append(Refusal(f"{path}.fqdn", "fqdn can only be set in egress rules"))
        fqdn = str(peer.get("fqdn"))
        if not fqdn or any(not (c.isascii() and (c.isalnum() or c in "-.*")) for c in fqdn):
            out.append(
                Refusal(f"{path}.fqdn", f"invalid characters in egress rule fqdn field: {fqdn}")
            )
    for sel in ("podSelector", "namespaceSelector", "externalEntitySelector", "nodeSelector"):
        out += check_selector_labels(f"{path}.{sel}", peer.get(sel))
    return out


def _check_multicast(path: str, rule: JSON) -> list[Refusal]:
    multicast = unicast = others = False
    for peer in _list(rule.get("to")):
        peer = _dict(peer)  # noqa: PLW2901
        block = _dict(peer.get("ipBlock"))
        if not block:
            continue
        if _is_multicast(str(block.get("cidr", ""))):
            multicast = True
        else:
            unicast = True
        if len(_fields_set(peer, PEER_FIELDS)) > 1:
            others = True
    out: list[Refusal] = []
    if multicast and rule.get("action") in ("Pass", "Reject"):
        out.append(Refusal(f"{path}.action", "multicast does not support action Pass or Reject"))
    if multicast and unicast:
        out.append(
            Refusal(
                f"{path}.to",
                "can not set multicast groupAddress and unicast ip address at the same time",
            )
        )
    if multicast and others:
        out.append(
            Refusal(
                f"{path}.to", "can not set multicast groupAddress and selectors at the same time"
            )
        )
    return out


def _check_ports(path: str, rule: JSON) -> list[Refusal]:
    out: list[Refusal] = []
    for i, port in enumerate(_list(rule.get("ports"))):
        port = _dict(port)  # noqa: PLW2901
        where = f"{path}.ports[{i}]"
        number = port.get("port")
        end = port.get("endPort")
        if isinstance(number, int) and not isinstance(number, bool):
            if not 1 <= number <= 65535:
                out.append(Refusal(f"{where}.port", "must be between 1 and 65535, inclusive"))
        elif isinstance(number, str) and number and end is None:
            pass
        if end is not None:
            if number is None:
                out.append(
                    Refusal(
                        f"{where}.endPort", "if `endPort` is specified `port` must be specified"
                    )
                )
            elif isinstance(number, str):
                out.append(
                    Refusal(
                        f"{where}.endPort", "if `port` is a string `endPort` cannot be specified"
                    )
                )
            elif isinstance(end, int) and isinstance(number, int) and end < number:
                out.append(
                    Refusal(
                        f"{where}.endPort", "`endPort` should be greater than or equal to `port`"
                    )
                )
        src, src_end = port.get("sourcePort"), port.get("sourceEndPort")
        if src_end is not None:
            if src is None:
                out.append(
                    Refusal(
                        f"{where}.sourceEndPort",
                        "if `sourceEndPort` is specified `sourcePort` must be specified",
                    )
                )
            elif isinstance(src, int) and isinstance(src_end, int) and src_end < src:
                out.append(
                    Refusal(
                        f"{where}.sourceEndPort",
                        "`sourceEndPort` should be greater than or equal to `sourcePort`",
                    )
                )
    return out


def _check_protocols(path: str, rule: JSON) -> list[Refusal]:
    out: list[Refusal] = []
    igmp = icmp = False
    for i, proto in enumerate(_list(rule.get("protocols"))):
        proto = _dict(proto)  # noqa: PLW2901
        if proto.get("igmp") is not None:
            igmp = True
            group = _dict(proto.get("igmp")).get("groupAddress")
            if group:
                try:
                    multicast = ipaddress.ip_address(str(group)).is_multicast
                except ValueError:
                    multicast = False
                if not multicast:
                    out.append(
                        Refusal(
                            f"{path}.protocols[{i}].igmp.groupAddress",
                            f"groupAddress {group} is not multicast address",
                        )
                    )
            if rule.get("action") in ("Pass", "Reject"):
                out.append(
                    Refusal(f"{path}.action", "protocol IGMP does not support Pass or Reject")
                )
        if proto.get("icmp") is not None:
            icmp = True
    if igmp and (
        _list(rule.get("ports"))
        or _list(rule.get("toServices"))
        or _list(rule.get("from"))
        or _list(rule.get("to"))
        or icmp
    ):
        out.append(
            Refusal(
                f"{path}.protocols",
                "protocol IGMP can not be used with other protocols or other properties like "
                "from, to",
            )
        )
    return out


# --- Tier ----------------------------------------------------------------------------------


def _tier_priority(obj: JSON) -> Any:
    return _dict(obj.get("spec")).get("priority")


def validate_tier_create(obj: JSON, tiers: Mapping[str, int]) -> list[Refusal]:
    """``tiers``: the existing tiers' priorities by name (static ones included)."""
    name = _dict(obj.get("metadata")).get("name", "")
    prio = _tier_priority(obj)
    lo, hi = TIER_PRIORITY_RANGE
    if isinstance(prio, bool) or not isinstance(prio, int) or not lo <= prio <= hi:
        return [Refusal("spec.priority", f"tier priority {prio} is out of range [{lo}, {hi}]")]
    if len(tiers) >= MAX_TIERS:
        return [Refusal("", f"maximum number of Tiers supported: {MAX_TIERS}")]
    if prio in RESERVED_TIER_PRIORITIES:
        return [Refusal("spec.priority", f"tier {name} priority {prio} is reserved")]
    for other, other_prio in tiers.items():
        if other != name and other_prio == prio:
            return [
                Refusal(
                    "spec.priority",
                    f"tier {name} priority {prio} overlaps with existing Tier {other}",
                )
            ]
    return []


def validate_tier_update(obj: JSON, old: JSON, user: str) -> list[Refusal]:
    if user == CONTROLLER_USER:
        return []
    if _tier_priority(obj) != _tier_priority(old):
        return [Refusal("spec.priority", "update to Tier priority is not allowed")]
    return []


def validate_tier_delete(old: JSON, references: Mapping[str, int]) -> list[Refusal]:
    """``references``: kind ("Antrea ClusterNetworkPolicies", ...) -> policies in this tier."""
    name = _dict(old.get("metadata")).get("name", "")
    if name in STATIC_TIERS:
        return [Refusal("metadata.name", f"cannot delete reserved tier {name}")]
    for kind, count in references.items():
        if count:
            return [Refusal("metadata.name", f"tier {name} is referenced by {count} {kind}")]
    return []


def policy_tier(obj: JSON) -> str:
    return str(_dict(obj.get("spec")).get("tier") or DEFAULT_TIER)


# --- ClusterGroup / Group --------------------------------------------------------------------


def validate_group(
    obj: JSON,
    *,
    cluster: bool,
    children_of: Mapping[str, Sequence[str]],
) -> list[Refusal]:
    """Checks of a ClusterGroup (``cluster``) or Group.

    ``children_of``: the existing groups (same namespace for a Group) -> their childGroups.
    """
    spec = _dict(obj.get("spec"))
    name = _dict(obj.get("metadata")).get("name", "")
    kind = "ClusterGroup" if cluster else "Group"
    allowed = (
        GROUP_SPEC_FIELDS if cluster else tuple(f for f in GROUP_SPEC_FIELDS if f != "ipBlock")
    )
    fields = [f for f in allowed if _set(spec.get(f)) or (f in spec and spec.get(f) == {})]
    out: list[Refusal] = []
    if not cluster and spec.get("ipBlock") is not None:
        out.append(Refusal("spec.ipBlock", "ipBlock is not supported for a Group, use ipBlocks"))
    ok_pair = "namespaceSelector" in fields and (
        "podSelector" in fields or "externalEntitySelector" in fields
    )
    if len(fields) > 2 or (len(fields) == 2 and not ok_pair):
        listed = "ipBlock, ipBlocks" if cluster else "ipBlocks"
        out.append(
            Refusal(
                "spec",
                f"At most one of podSelector, externalEntitySelector, serviceReference, {listed} "
                f"or childGroups can be set for a {kind} (got {', '.join(fields)})",
            )
        )
    for sel in ("podSelector", "namespaceSelector", "externalEntitySelector"):
        out += check_selector_labels(f"spec.{sel}", spec.get(sel))
    blocks: list[tuple[str, Any]] = [
        (f"spec.ipBlocks[{i}]", b) for i, b in enumerate(_list(spec.get("ipBlocks")))
    ]
    if cluster and spec.get("ipBlock") is not None:
        blocks.append(("spec.ipBlock", spec.get("ipBlock")))
    multicast = unicast = False
    for path, block in blocks:
        errs = check_ip_block(path, block)
        out += errs
        if not errs:
            if _is_multicast(str(_dict(block).get("cidr"))):
                multicast = True
            else:
                unicast = True
    if multicast and unicast:
        out.append(
            Refusal(
                "spec.ipBlocks",
                "can not set multicast groupAddress together with unicast ip address",
            )
        )
    children = [str(c) for c in _list(spec.get("childGroups"))]
    if children:
        parents = sorted(p for p, kids in children_of.items() if name in kids and p != name)
        if parents:
            out.append(
                Refusal(
                    "spec.childGroups",
                    f"cannot set childGroups for {kind} {name}, who has {len(parents)} parents",
                )
            )
        for i, child in enumerate(children):
            if child == name:
                out.append(
                    Refusal(f"spec.childGroups[{i}]", f"{kind} {name} cannot be its own child")
                )
            grandchildren = children_of.get(child) or ()
            if grandchildren:
                out.append(
                    Refusal(
                        f"spec.childGroups[{i}]",
                        f"cannot set {kind} {child} as childGroup, who has "
                        f"{len(grandchildren)} childGroups itself",
                    )
                )
    return out
