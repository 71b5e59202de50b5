"""The one place where flow values become `ovs-ofctl` text.

Everything above this module handles `Flow` values. The output is what
`ovs-ofctl -O OpenFlow15 --bundle add-flows BRIDGE -` reads: one flow per line, each line
starting with its operation (``add``, ``modify_strict`` or ``delete_strict``); groups; the
filters of ``dump-flows``/``del-flows`` (`render_filter`); the packet of an
``ofproto/trace`` (`render_trace_packet`); and the arguments of ``dpctl/dump-conntrack`` and
``dpctl/flush-conntrack`` (`render_ct_zone`, `render_ct_tuple`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache

from antrea.ovs.openflow.flow import (
    Action,
    Conjunction,
    ConntrackTuple,
    Ct,
    CtClear,
    CtState,
    DecTTL,
    Drop,
    Flow,
    FlowFilter,
    GotoTable,
    IPAddr,
    Learn,
    LoadReg,
    Match,
    Move,
    Normal,
    Output,
    OutputGroup,
    OutputReg,
    RegMatch,
    Resubmit,
    SetField,
)
from antrea.ovs.openflow.groups import Group, GroupType
from antrea.ovs.openflow.wire import IP_PROTOS

_CT_FLAGS = ("new", "est", "rel", "rpl", "inv", "trk")


def _bits_mask(start: int, end: int) -> int:
    return ((1 << (end - start + 1)) - 1) << start


def _render_reg(m: RegMatch) -> str:
    if m.start == 0 and m.end == 31:
        return f"reg{m.reg}={m.value:#x}"
    return f"reg{m.reg}={m.value << m.start:#x}/{_bits_mask(m.start, m.end):#x}"


@lru_cache(maxsize=256)
def render_ct_state(s: CtState) -> str:
    out = []
    for flag in _CT_FLAGS:
        v = getattr(s, flag)
        if v is not None:
            out.append(("+" if v else "-") + flag)
    return "".join(out)


def render_match(m: Match) -> str:
    """The match as ovs-ofctl text (fields in a fixed order)."""
    parts: list[str] = []
    if m.proto is not None:
        parts.append(m.proto)
    if m.in_port is not None:
        parts.append(f"in_port={m.in_port}")
    if m.dl_src is not None:
        parts.append(f"dl_src={m.dl_src}")
    if m.dl_dst is not None:
        parts.append(f"dl_dst={m.dl_dst}")
    parts.extend(_render_reg(r) for r in m.regs)
    if m.ct_state is not None:
        parts.append(f"ct_state={render_ct_state(m.ct_state)}")
    if m.ct_mark is not None:
        parts.append(f"ct_mark={m.ct_mark[0]:#x}/{m.ct_mark[1]:#x}")
    if m.ct_label is not None:
        parts.append(f"ct_label={m.ct_label[0]:#x}/{m.ct_label[1]:#x}")
    if m.conj_id is not None:
        parts.append(f"conj_id={m.conj_id}")
    if m.tun_id is not None:
        parts.append(f"tun_id={m.tun_id:#x}")
    if m.tun_dst is not None:
        parts.append(f"tun_dst={m.tun_dst}")
    if m.nw_src is not None:
        parts.append(f"nw_src={m.nw_src}")
    if m.nw_dst is not None:
        parts.append(f"nw_dst={m.nw_dst}")
    if m.arp_op is not None:
        parts.append(f"arp_op={m.arp_op}")
    if m.arp_spa is not None:
        parts.append(f"arp_spa={m.arp_spa}")
    if m.arp_tpa is not None:
        parts.append(f"arp_tpa={m.arp_tpa}")
    if m.arp_sha is not None:
        parts.append(f"arp_sha={m.arp_sha}")
    if m.tp_src is not None:
        parts.append(f"tp_src={m.tp_src}")
    if m.tp_dst is not None:
        if m.tp_dst_mask is not None:
            parts.append(f"tp_dst={m.tp_dst:#x}/{m.tp_dst_mask:#x}")
        else:
            parts.append(f"tp_dst={m.tp_dst}")
    if m.tcp_flags is not None:
        parts.append(f"tcp_flags={m.tcp_flags}")
    if m.icmp_type is not None:
        parts.append(f"icmp_type={m.icmp_type}")
    if m.icmp_code is not None:
        parts.append(f"icmp_code={m.icmp_code}")
    return ",".join(parts)


def render_table_match(table: int, match: Match) -> str:
    """``table=N MATCH``: where one flow owner's flows live (a policy owner in logs and in the
    errors a rule reports)."""
    return f"table={table} {render_match(match)}"


def render_action(a: Action) -> str:
    if isinstance(a, Output):
        return f"output:{a.port}"
    if isinstance(a, OutputReg):
        return f"output:NXM_NX_REG{a.reg}[]"
    if isinstance(a, Normal):
        return "NORMAL"
    if isinstance(a, Drop):
        return "drop"
    if isinstance(a, GotoTable):
        return f"goto_table:{a.table}"
    if isinstance(a, Resubmit):
        return f"resubmit(,{a.table})"
    if isinstance(a, LoadReg):
        if a.start == 0 and a.end == 31:
            rng = ""
        elif a.start == a.end:
            rng = str(a.start)
        else:
            rng = f"{a.start}..{a.end}"
        return f"load:{a.value:#x}->NXM_NX_REG{a.reg}[{rng}]"
    if isinstance(a, SetField):
        return f"set_field:{a.value}->{a.field}"
    if isinstance(a, Move):
        return f"move:{a.src}->{a.dst}"
    if isinstance(a, DecTTL):
        return "dec_ttl"
    if isinstance(a, CtClear):
        return "ct_clear"
    if isinstance(a, Conjunction):
        return f"conjunction({a.conj_id},{a.clause}/{a.n_clauses})"
    if isinstance(a, Ct):
        args: list[str] = []
        if a.commit:
            args.append("commit")
        if a.table is not None:
            args.append(f"table={a.table}")
        if a.zone is not None:
            args.append(f"zone={a.zone}")
        if a.nat_dst is not None:
            args.append(render_nat_dst(*a.nat_dst))
        elif a.nat_src is not None:
            args.append(f"nat(src={a.nat_src})")
        elif a.nat:
            args.append("nat")
        if a.exec_:
            args.append(f"exec({render_actions(a.exec_)})")
        return f"ct({','.join(args)})"
    if isinstance(a, OutputGroup):
        return f"group:{a.group_id}"
    if isinstance(a, Learn):
        return render_learn(a)
    raise TypeError(f"unknown action {a!r}")


def render_nat_dst(ip: str, port: int) -> str:
    """``nat(dst=IP:PORT)``, the DNAT of a `Ct` action (also how antctl finds a Service's
    endpoint flows in a dump)."""
    return f"nat(dst={ip}:{port})"


def render_learn(a: Learn) -> str:
    args = [f"table={a.table}"]
    if a.idle_timeout:
        args.append(f"idle_timeout={a.idle_timeout}")
    if a.hard_timeout:
        args.append(f"hard_timeout={a.hard_timeout}")
    args += [f"priority={a.priority}", f"cookie={a.cookie:#x}"]
    if a.delete_learned:
        args.append("delete_learned")
    args += [f"eth_type={a.eth_type:#x}", f"nw_proto={a.ip_proto}"]
    for spec in a.specs:
        if spec.kind == "load" and spec.value is not None:
            args.append(f"load:{spec.value:#x}->{spec.dst}")
        elif spec.kind == "load":
            args.append(f"load:{spec.src}->{spec.dst}")
        elif spec.src is None:
            args.append(spec.dst)
        else:
            args.append(f"{spec.dst}={spec.src}")
    return f"learn({','.join(args)})"


def render_group(group: Group) -> str:
    """A group as ``ovs-ofctl`` (OpenFlow 1.5) takes it: id, type, numbered buckets."""
    text = f"group_id={group.group_id},type={group.type.name.lower()}"
    for i, b in enumerate(group.buckets):
        weight = f",weight:{b.weight or 1}" if group.type is GroupType.SELECT else ""
        text += f",bucket=bucket_id:{i}{weight},actions={render_actions(b.actions)}"
    return text


def render_group_delete(group: Group) -> str:
    """A group's delete as ``ovs-ofctl`` takes it: its id."""
    return f"group_id={group.group_id}"


def render_actions(actions: Iterable[Action]) -> str:
    text = ",".join(render_action(a) for a in actions)
    return text or "drop"


def _head(flow: Flow) -> str:
    match = render_match(flow.match)
    head = f"table={flow.table},priority={flow.priority}"
    return f"{head},{match}" if match else head


def render_add(flow: Flow) -> str:
    """An ``add`` line; the cookie is set (round and category live there)."""
    match = render_match(flow.match)
    head = f"table={flow.table},priority={flow.priority},cookie={flow.cookie:#x}"
    if match:
        head = f"{head},{match}"
    return f"add {head} actions={render_actions(flow.actions)}"


def render_modify(flow: Flow) -> str:
    """A ``modify_strict`` line: new actions for the flow with this key, counters kept."""
    return f"modify_strict {_head(flow)} actions={render_actions(flow.actions)}"


def render_delete(flow: Flow) -> str:
    """A ``delete_strict`` line: removes exactly the flow with this key."""
    return f"delete_strict {_head(flow)}"


def render_bundle(
    *, add: Sequence[Flow] = (), modify: Sequence[Flow] = (), delete: Sequence[Flow] = ()
) -> str:
    """The stdin document for one bundle: deletes first, then modifies, then adds."""
    lines = [render_delete(f) for f in delete]
    lines.extend(render_modify(f) for f in modify)
    lines.extend(render_add(f) for f in add)
    lines.append("")
    return "\n".join(lines)


def render_mixed_bundle(
    *,
    add: Sequence[Flow] = (),
    modify: Sequence[Flow] = (),
    delete: Sequence[Flow] = (),
    set_groups: Sequence[Group] = (),
    delete_groups: Sequence[Group] = (),
) -> str:
    """The file of ``ovs-ofctl bundle``: group and flow mods, each line naming its kind."""
    lines = [f"group add_or_mod {render_group(g)}" for g in set_groups]
    lines.extend(f"flow {render_delete(f)}" for f in delete)
    lines.extend(f"flow {render_modify(f)}" for f in modify)
    lines.extend(f"flow {render_add(f)}" for f in add)
    lines.extend(f"group delete {render_group_delete(g)}" for g in delete_groups)
    lines.append("")
    return "\n".join(lines)


def render_flow(flow: Flow) -> str:
    """The flow as `ovs-ofctl add-flow` would take it (no operation prefix): for logs and docs."""
    return render_add(flow)[len("add ") :]


def render_filter(f: FlowFilter) -> str:
    """A ``dump-flows``/``del-flows`` filter, e.g. ``table=250`` or ``cookie=0x1/0xff``."""
    parts: list[str] = []
    if f.table is not None:
        parts.append(f"table={f.table}")
    if f.cookie is not None:
        cookie = f"cookie={f.cookie:#x}"
        parts.append(cookie if f.cookie_mask is None else f"{cookie}/{f.cookie_mask:#x}")
    return ",".join(parts)


def render_trace_packet(
    *,
    in_port: int,
    dl_src: str,
    dl_dst: str,
    proto: str,
    nw_src: IPAddr,
    nw_dst: IPAddr,
    nw_ttl: int = 64,
    extra: str = "",
) -> str:
    """The packet of an ``ovs-appctl ofproto/trace`` (``extra``: more fields, as typed by the
    user of antctl trace-packet, appended as given)."""
    fields = [
        f"in_port={in_port}",
        f"dl_src={dl_src}",
        f"dl_dst={dl_dst}",
        proto,
        f"nw_src={nw_src}",
        f"nw_dst={nw_dst}",
        f"nw_ttl={nw_ttl}",
    ]
    if extra:
        fields.append(extra)
    return ",".join(fields)


def render_port_tokens(ofport: int, ip: IPAddr, mac: str) -> frozenset[str]:
    """The ``field=value`` tokens through which a dumped flow names one port, its address or
    its MAC (how antctl's ``--pod`` picks a pod's flows out of a dump)."""
    return frozenset(
        {
            f"in_port={ofport}",
            f"reg1={ofport:#x}",
            f"nw_dst={ip}",
            f"nw_src={ip}",
            f"dl_dst={mac}",
            f"dl_src={mac}",
            f"arp_spa={ip}",
        }
    )


def render_ct_zone(zone: int) -> str:
    """The zone argument of ``dpctl/dump-conntrack`` and ``dpctl/flush-conntrack``."""
    return f"zone={zone}"


def render_ct_tuple(t: ConntrackTuple) -> str:
    """The tuple of ``dpctl/flush-conntrack``: the original direction of one connection."""
    return (
        f"ct_nw_src={t.src},ct_nw_dst={t.dst},ct_nw_proto={IP_PROTOS[t.proto]},"
        f"ct_tp_src={t.sport},ct_tp_dst={t.dport}"
    )
