"""Typed OpenFlow flows for Open vSwitch.

`flow` holds the values (`Flow`, `Match`, actions), `render` is the one place that turns them
into `ovs-ofctl` text and `wire` the one place that turns them into OpenFlow 1.5 bytes, `bundle`
is the one interface through which flow changes reach a switch (`native`: a held OpenFlow
connection; `bundle.OfctlBundleTransport`: one `ovs-ofctl` process per bundle),
`client` keeps the installed flows per owner and turns desired state into one bundle of deltas.
"""

from antrea.ovs.openflow.flow import (
    Action,
    Conjunction,
    Ct,
    CtClear,
    CtState,
    DecTTL,
    Drop,
    Flow,
    FlowKey,
    GotoTable,
    LoadReg,
    Match,
    Move,
    Normal,
    Output,
    OutputReg,
    RegMatch,
    Resubmit,
    SetField,
)

__all__ = [
    "Action",
    "Conjunction",
    "Ct",
    "CtClear",
    "CtState",
    "DecTTL",
    "Drop",
    "Flow",
    "FlowKey",
    "GotoTable",
    "LoadReg",
    "Match",
    "Move",
    "Normal",
    "Output",
    "OutputReg",
    "RegMatch",
    "Resubmit",
    "SetField",
]
