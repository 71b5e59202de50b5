"""The control-plane wire format: msgpack frames, versions 1 and 2.

A watch stream is a sequence of self-delimiting msgpack maps (no extra framing; feed the bytes to
`FrameDecoder`). Every frame is::

    {"v": 1|2, "type": "ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK"|"ERROR",
     "kind": "NetworkPolicy"|"AddressGroup"|"AppliedToGroup"|"",
     "object": <object map>|None,      # ADDED, MODIFIED (full object), DELETED (name only needed)
     "patch": <patch map>|None,        # MODIFIED of an AddressGroup may carry a patch instead
     "rv": <int>}                      # stream resource version (monotonic per controller)

Object maps use short, stable keys documented in docs/design/controlplane-protocol.md. This
module is the only place that knows them; everything else handles the dataclasses in `types`.
Version 2 differs in one thing: a NetworkPolicy rule is a positional array (`rule_array`), not
a map: half the bytes of a policy-heavy stream, and about a third of the decoding (no key
strings to build and look up). A stream has one version, chosen by the client's ``Accept``
(`names.STREAM_CONTENT_TYPE_V2`); the decoder takes either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, cast

import msgpack

from antrea.apis.controlplane.fastnew import positional_new
from antrea.apis.controlplane.types import (
    AddressGroup,
    AddressGroupPatch,
    AppliedToGroup,
    ControlPlaneObject,
    Direction,
    GroupMember,
    IPBlock,
    Kind,
    NamedPort,
    NetworkPolicy,
    NetworkPolicyNodeStatus,
    NetworkPolicyPeer,
    NetworkPolicyReference,
    NetworkPolicyRule,
    PodReference,
    Protocol,
    RuleAction,
    Service,
    new_block,
    new_peer,
    new_rule,
)
from antrea.errors import AntreaError

WIRE_VERSION = 1
"""The version of status bodies, and of streams to clients that do not ask for another."""
WIRE_VERSIONS = (1, 2)


class DecodeError(AntreaError, ValueError):
    """A frame that is not valid version-1 control-plane msgpack."""


class EventType(StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"
    BOOKMARK = "BOOKMARK"
    ERROR = "ERROR"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: EventType
    kind: Kind | None = None
    object: ControlPlaneObject | None = None
    patch: AddressGroupPatch | None = None
    rv: int = 0
    message: str = ""
    # A version-2 NetworkPolicy event's rules as they came off the wire (`rule_array` form, in
    # rule order): the agent's rule cache hashes them for the rule IDs instead of rebuilding
    # each rule's canonical form. Not part of the event's value.
    rule_arrays: tuple[Any, ...] | None = field(default=None, compare=False, repr=False)


# Lookups by wire value: a dict is several times cheaper than calling the enum (a missing key
# is a KeyError, i.e. a DecodeError like the enum's ValueError).
_DIRECTIONS = {str(d): d for d in Direction}
_ACTIONS = {str(a): a for a in RuleAction}
_EMPTY_PEER = NetworkPolicyPeer()
_EMPTY_PEER_MAP: dict[str, Any] = {"ag": [], "ipb": []}
_DIRECTION_WIRE = {d: str(d) for d in Direction}
# Rules, peers and blocks are built in bulk with the positional constructors of `types`
# (new_rule, new_peer, new_block).
_new_ref = cast(
    Callable[[str, str, str, str], NetworkPolicyReference], positional_new(NetworkPolicyReference)
)
_new_event = cast(
    Callable[
        [
            EventType,
            Kind | None,
            ControlPlaneObject | None,
            AddressGroupPatch | None,
            int,
            str,
            tuple[Any, ...] | None,
        ],
        WatchEvent,
    ],
    positional_new(WatchEvent),
)
_new_policy = cast(
    Callable[
        [
            str,
            NetworkPolicyReference,
            tuple[NetworkPolicyRule, ...],
            tuple[str, ...],
            int,
            int | None,
            float | None,
        ],
        NetworkPolicy,
    ],
    positional_new(NetworkPolicy),
)


# --- members -----------------------------------------------------------------------------


def _member_to(m: GroupMember) -> list[Any]:
    return [
        m.pod.namespace,
        m.pod.name,
        list(m.ips),
        m.node,
        [[p.name, str(p.protocol), p.port] for p in m.ports],
    ]


def _member_from(v: list[Any]) -> GroupMember:
    ns, name, ips, node, ports = v
    return GroupMember(
        pod=PodReference(ns, name),
        ips=tuple(ips),
        node=node,
        ports=tuple(NamedPort(p[0], Protocol(p[1]), p[2]) for p in ports),
    )


def _members_to(ms: frozenset[GroupMember]) -> list[Any]:
    return [_member_to(m) for m in ms]


def _members_from(v: list[Any]) -> frozenset[GroupMember]:
    return frozenset(_member_from(m) for m in v)


# --- policies ----------------------------------------------------------------------------


def _peer_to(p: NetworkPolicyPeer) -> dict[str, Any]:
    ag, ipb = p.address_groups, p.ip_blocks
    if not ag and not ipb:
        return _EMPTY_PEER_MAP  # most rules have one empty side; packed, never mutated
    return {"ag": list(ag), "ipb": [[b.cidr, list(b.except_)] for b in ipb]}


def _peer_from(v: dict[str, Any]) -> NetworkPolicyPeer:
    ag, ipb = v["ag"], v["ipb"]
    if ag == () and ipb == ():
        return _EMPTY_PEER  # most rules have one empty side (the local one)
    return new_peer(
        ag if type(ag) is tuple else tuple(ag),
        tuple([new_block(b[0], tuple(b[1])) for b in ipb]),
    )


def _rule_to(r: NetworkPolicyRule) -> dict[str, Any]:
    services, action = r.services, r.action
    out = {
        "dir": _DIRECTION_WIRE[r.direction],
        "from": _peer_to(r.from_),
        "to": _peer_to(r.to),
        "svc": None
        if services is None
        else [[str(s.protocol), s.port, s.end_port, s.icmp_type, s.icmp_code] for s in services],
        "name": r.name,
        "prio": r.priority,
        "act": None if action is None else str(action),
        "ratg": list(r.applied_to_groups),
    }
    if r.enable_logging:
        out["log"] = True
    if r.log_label:
        out["logl"] = r.log_label
    return out


def _rule_from(v: dict[str, Any]) -> NetworkPolicyRule:
    svc, act, ratg = v["svc"], v.get("act"), v.get("ratg")
    return new_rule(
        _DIRECTIONS[v["dir"]],
        _peer_from(v["from"]),
        _peer_from(v["to"]),
        None if svc is None else tuple([_service_from(s) for s in svc]),
        v["name"],
        v["prio"],
        None if act is None else _ACTIONS[act],
        () if not ratg else ratg if type(ratg) is tuple else tuple(ratg),
        bool(v.get("log")),
        str(v.get("logl") or ""),
    )


def rule_array(r: NetworkPolicyRule) -> list[Any]:
    """A rule in wire version 2: ``[direction, fromAddressGroups, fromIPBlocks, toAddressGroups,
    toIPBlocks, services, name, priority, action, ruleAppliedToGroups, enableLogging,
    logLabel]`` (blocks and services as in version 1's rule map)."""
    f, t, services, action = r.from_, r.to, r.services, r.action
    return [
        _DIRECTION_WIRE[r.direction],
        list(f.address_groups),
        [[b.cidr, list(b.except_)] for b in f.ip_blocks],
        list(t.address_groups),
        [[b.cidr, list(b.except_)] for b in t.ip_blocks],
        None
        if services is None
        else [[str(s.protocol), s.port, s.end_port, s.icmp_type, s.icmp_code] for s in services],
        r.name,
        r.priority,
        None if action is None else str(action),
        list(r.applied_to_groups),
        r.enable_logging,
        r.log_label,
    ]


def _peer_from_arrays(ag: Any, ipb: Any) -> NetworkPolicyPeer:
    if not ag and not ipb:
        return _EMPTY_PEER
    if len(ipb) == 1:  # the common shape: one block (a comprehension costs a frame)
        cidr, except_ = ipb[0]
        blocks: tuple[IPBlock, ...] = (
            new_block(cidr, except_ if type(except_) is tuple else tuple(except_)),
        )
    else:
        blocks = tuple([new_block(b[0], tuple(b[1])) for b in ipb])
    return new_peer(ag if type(ag) is tuple else tuple(ag), blocks)


def _rule_from_array(v: Any) -> NetworkPolicyRule:
    d, fag, fipb, tag, tipb, svc, name, prio, act, ratg, log, logl = v
    if log.__class__ is not bool or logl.__class__ is not str:
        raise DecodeError(f"malformed rule: enableLogging {log!r}, logLabel {logl!r}")
    return new_rule(
        _DIRECTIONS[d],
        _EMPTY_PEER if not fag and not fipb else _peer_from_arrays(fag, fipb),
        _EMPTY_PEER if not tag and not tipb else _peer_from_arrays(tag, tipb),
        None if svc is None else tuple([_service_from(s) for s in svc]),
        name,
        prio,
        None if act is None else _ACTIONS[act],
        () if not ratg else ratg if type(ratg) is tuple else tuple(ratg),
        log,
        logl,
    )


def _service_from(s: list[Any]) -> Service:
    icmp_type = s[3] if len(s) > 3 else None
    icmp_code = s[4] if len(s) > 4 else None
    return Service(Protocol(s[0]), s[1], s[2], icmp_type, icmp_code)


def object_to_map(obj: ControlPlaneObject, version: int = WIRE_VERSION) -> dict[str, Any]:
    """The wire map of one object (public so antctl can render the same data)."""
    if isinstance(obj, NetworkPolicy):
        ref = obj.source_ref
        return {
            "name": obj.name,
            "ref": [ref.type, ref.namespace, ref.name, ref.uid],
            "rules": [rule_array(r) for r in obj.rules]
            if version == 2
            else [_rule_to(r) for r in obj.rules],
            "atg": list(obj.applied_to_groups),
            "gen": obj.generation,
            "tp": obj.tier_priority,
            "pp": obj.priority,
        }
    return {"name": obj.name, "members": _members_to(obj.members)}


def object_from_map(
    kind: Kind, v: dict[str, Any], version: int = WIRE_VERSION
) -> ControlPlaneObject:
    if kind is Kind.NETWORK_POLICY:
        rule_from = _rule_from_array if version == 2 else _rule_from
        return _new_policy(
            v["name"],
            _new_ref(*v["ref"]),
            tuple([rule_from(r) for r in v["rules"]]),
            tuple(v["atg"]),
            v["gen"],
            v.get("tp"),
            v.get("pp"),
        )
    if kind is Kind.ADDRESS_GROUP:
        return AddressGroup(v["name"], _members_from(v["members"]))
    return AppliedToGroup(v["name"], _members_from(v["members"]))


def _kind_of(obj: ControlPlaneObject) -> Kind:
    if isinstance(obj, NetworkPolicy):
        return Kind.NETWORK_POLICY
    if isinstance(obj, AddressGroup):
        return Kind.ADDRESS_GROUP
    return Kind.APPLIED_TO_GROUP


# --- frames ------------------------------------------------------------------------------


def event_to_map(ev: WatchEvent, version: int = WIRE_VERSION) -> dict[str, Any]:
    kind = ev.kind or (_kind_of(ev.object) if ev.object is not None else None)
    patch = None
    if ev.patch is not None:
        patch = {
            "name": ev.patch.name,
            "add": _members_to(ev.patch.added),
            "del": _members_to(ev.patch.removed),
        }
    if version not in WIRE_VERSIONS:
        raise ValueError(f"unknown wire version {version!r}")
    return {
        "v": version,
        "type": str(ev.type),
        "kind": str(kind) if kind else "",
        "object": object_to_map(ev.object, version) if ev.object is not None else None,
        "patch": patch,
        "rv": ev.rv,
        "msg": ev.message,
    }


def encode_event(ev: WatchEvent, version: int = WIRE_VERSION) -> bytes:
    """The frame of `ev`: exactly ``msgpack.packb(event_to_map(ev, version))``, built faster
    for a NetworkPolicy (see `_policy_bytes`)."""
    obj = ev.object
    if (
        obj is not None
        and obj.__class__ is NetworkPolicy
        and len(obj.rules) >= _PIECEWISE_RULES
        and ev.patch is None
        and version in _BULK_RULE
    ):
        kind = ev.kind or Kind.NETWORK_POLICY
        return b"".join(
            (
                _EVENT_HEAD[version],
                _pack(str(ev.type)),
                _K_KIND,
                _pack(str(kind)),
                _K_OBJECT,
                _policy_bytes(obj, version),
                _NO_PATCH_RV,
                _pack(ev.rv),
                _K_MSG,
                _pack(ev.message),
            )
        )
    out: bytes = msgpack.packb(event_to_map(ev, version), use_bin_type=True)
    return out


# A NetworkPolicy frame is packed piece by piece: msgpack is compositional (a map is its header
# followed by its packed keys and values, an array likewise), so the concatenation of the pieces
# below, in `event_to_map`'s order, is byte for byte what packing the whole map gives. A rule of
# the bulk shape (one side a single ipBlock without except, the other side empty, nothing else
# set) is a fixed prefix, its packed CIDR and a fixed suffix (per wire version: a rule map in
# version 1, `rule_array` in version 2); any other rule is packed from its map or array.
# Checked against `msgpack.packb(event_to_map(ev, version))` by property tests.
def _pack(value: Any) -> bytes:
    out: bytes = msgpack.packb(value, use_bin_type=True)
    return out


def _bulk_rule_parts(version: int) -> dict[Direction, tuple[bytes, bytes]]:
    """(prefix, suffix) of a bulk-shape rule per direction: the packed CIDR goes between."""
    arr = _packer.pack_array_header
    block = arr(1) + arr(2)  # [[cidr, except]] up to the CIDR
    rest: list[Any] = [None, "", -1, None, []]  # services, name, priority, action, ratg
    no_except = _pack([])
    if version == 1:
        empty = _pack(_EMPTY_PEER_MAP)
        one = _packer.pack_map_header(2) + _pack("ag") + _pack([]) + _pack("ipb") + block
        tail = b"".join(_pack(k) + _pack(v) for k, v in zip(_RULE_KEYS[3:], rest, strict=True))
        head = _packer.pack_map_header(8) + _pack("dir")
        k_from, k_to = _pack("from"), _pack("to")
        return {
            Direction.IN: (
                head + _pack("In") + k_from + one,
                no_except + k_to + empty + tail,
            ),
            Direction.OUT: (
                head + _pack("Out") + k_from + empty + k_to + one,
                no_except + tail,
            ),
        }
    # rule_array: direction, from (groups, blocks), to (groups, blocks), rest, logging, label
    tail = b"".join(_pack(v) for v in [*rest, False, ""])
    no_groups = _pack([])
    return {
        Direction.IN: (arr(12) + _pack("In") + no_groups + block, no_except + no_groups * 2 + tail),
        Direction.OUT: (arr(12) + _pack("Out") + no_groups * 3 + block, no_except + tail),
    }


_packer = msgpack.Packer(use_bin_type=True)
# From this many rules on, packing a policy piece by piece is cheaper than building its map
# (a dozen small packb calls against one per rule).
_PIECEWISE_RULES = 16
_RULE_KEYS = ("dir", "from", "to", "svc", "name", "prio", "act", "ratg")
_EVENT_HEAD = {
    v: _packer.pack_map_header(7) + _pack("v") + _pack(v) + _pack("type") for v in WIRE_VERSIONS
}
_K_KIND, _K_OBJECT, _K_MSG = _pack("kind"), _pack("object"), _pack("msg")
_NO_PATCH_RV = _pack("patch") + _pack(None) + _pack("rv")
_POLICY_HEAD = _packer.pack_map_header(7) + _pack("name")
_K_REF, _K_RULES, _K_ATG = _pack("ref"), _pack("rules"), _pack("atg")
_K_GEN, _K_TP, _K_PP = _pack("gen"), _pack("tp"), _pack("pp")
_BULK_RULE = {v: _bulk_rule_parts(v) for v in WIRE_VERSIONS}
_IN, _OUT = Direction.IN, Direction.OUT
# A str of fewer than 32 bytes packs as one header byte (0xa0 | length) and its UTF-8 bytes.
_FIXSTR = [bytes([0xA0 | n]) for n in range(32)]


def _rules_bytes(rules: tuple[NetworkPolicyRule, ...], version: int) -> bytes:
    parts = [_packer.pack_array_header(len(rules))]
    append = parts.append
    bulk, fixstr = _BULK_RULE[version], _FIXSTR
    other = rule_array if version == 2 else _rule_to
    for r in rules:
        if (
            r.services is None
            and r.priority == -1
            and r.action is None
            and not r.name
            and not r.applied_to_groups
            and r.enable_logging is False
            and not r.log_label
        ):
            d, f, t = r.direction, r.from_, r.to
            local, remote = (t, f) if d is _IN else (f, t)
            if (d is _IN or d is _OUT) and not (
                local.address_groups or local.ip_blocks or remote.address_groups
            ):
                blocks = remote.ip_blocks
                if len(blocks) == 1 and not blocks[0].except_:
                    cidr = blocks[0].cidr.encode()
                    if len(cidr) < 32:
                        head, tail = bulk[d]
                        append(head)
                        append(fixstr[len(cidr)])
                        append(cidr)
                        append(tail)
                        continue
        append(_pack(other(r)))
    return b"".join(parts)


def _policy_bytes(p: NetworkPolicy, version: int) -> bytes:
    ref = p.source_ref
    return b"".join(
        (
            _POLICY_HEAD,
            _pack(p.name),
            _K_REF,
            _pack([ref.type, ref.namespace, ref.name, ref.uid]),
            _K_RULES,
            _rules_bytes(p.rules, version),
            _K_ATG,
            _pack(list(p.applied_to_groups)),
            _K_GEN,
            _pack(p.generation),
            _K_TP,
            _pack(p.tier_priority),
            _K_PP,
            _pack(p.priority),
        )
    )


_EVENT_TYPES = {str(t): t for t in EventType}
_KINDS = {str(k): k for k in Kind}


def event_from_map(v: Any) -> WatchEvent:
    try:
        version = v.get("v") if isinstance(v, dict) else None
        if version not in WIRE_VERSIONS:
            raise DecodeError(
                f"unsupported frame version: {v.get('v') if isinstance(v, dict) else v!r}"
            )
        etype = _EVENT_TYPES[v["type"]]
        kind = _KINDS[v["kind"]] if v["kind"] else None
        obj = (
            object_from_map(kind, v["object"], version)
            if v["object"] is not None and kind
            else None
        )
        patch = None
        if v["patch"] is not None:
            p = v["patch"]
            patch = AddressGroupPatch(p["name"], _members_from(p["add"]), _members_from(p["del"]))
        arrays = None
        if version == 2 and obj is not None and kind is Kind.NETWORK_POLICY:
            arrays = v["object"]["rules"]
            if type(arrays) is not tuple:
                arrays = tuple(arrays)
        return _new_event(etype, kind, obj, patch, v.get("rv", 0), v.get("msg", ""), arrays)
    except DecodeError:
        raise
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise DecodeError(f"malformed frame: {exc!r}") from exc


def decode_event(data: bytes) -> WatchEvent:
    try:
        v = msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=False)
    except Exception as exc:
        raise DecodeError(f"not msgpack: {exc}") from exc
    return event_from_map(v)


class FrameDecoder:
    """Incremental decoder for a byte stream of frames (feed chunks, iterate events)."""

    def __init__(self) -> None:
        # Arrays decode as tuples (use_list=False): what the objects hold anyway, so nothing
        # is copied, and tuples are ~2x cheaper for msgpack to build than lists.
        self._unpacker = msgpack.Unpacker(
            raw=False, strict_map_key=False, max_buffer_size=256 << 20, use_list=False
        )

    def feed(self, chunk: bytes) -> Iterator[WatchEvent]:
        self._unpacker.feed(chunk)
        for v in self._unpacker:
            yield event_from_map(v)


def _status_to(st: NetworkPolicyNodeStatus) -> dict[str, Any]:
    return {
        "v": WIRE_VERSION,
        "policy": st.policy,
        "node": st.node,
        "gen": st.generation,
        "realized": st.realized,
        "msg": st.message,
    }


def _status_from(v: Any) -> NetworkPolicyNodeStatus:
    return NetworkPolicyNodeStatus(v["policy"], v["node"], v["gen"], v["realized"], v["msg"])


def encode_status(st: NetworkPolicyNodeStatus) -> bytes:
    out: bytes = msgpack.packb(_status_to(st), use_bin_type=True)
    return out


def decode_status(data: bytes) -> NetworkPolicyNodeStatus:
    try:
        return _status_from(msgpack.unpackb(data, raw=False))
    except Exception as exc:
        raise DecodeError(f"malformed status: {exc!r}") from exc


def encode_statuses(statuses: list[NetworkPolicyNodeStatus]) -> bytes:
    """Several statuses in one body: ``{"v": 1, "items": [<status map>, ...]}``."""
    out: bytes = msgpack.packb(
        {"v": WIRE_VERSION, "items": [_status_to(st) for st in statuses]}, use_bin_type=True
    )
    return out


def decode_statuses(data: bytes) -> list[NetworkPolicyNodeStatus]:
    try:
        v = msgpack.unpackb(data, raw=False)
        if v["v"] != WIRE_VERSION:
            raise ValueError(f"unsupported version {v['v']!r}")
        return [_status_from(item) for item in v["items"]]
    except Exception as exc:
        raise DecodeError(f"malformed statuses: {exc!r}") from exc
