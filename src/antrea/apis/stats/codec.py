"""msgpack encoding of a `NodeStatsSummary` (the agent's POST to `names.SUMMARY_PATH`)::

{"v": 1, "node": str, "rules": [[policy, rule, since, packets, bytes, sessions], ...]}
"""

from __future__ import annotations

import msgpack

from antrea.apis.controlplane.codec import DecodeError
from antrea.apis.stats.types import NodeStatsSummary, RuleTraffic, TrafficStats

WIRE_VERSION = 1


def encode_summary(s: NodeStatsSummary) -> bytes:
    out: bytes = msgpack.packb(
        {
            "v": WIRE_VERSION,
            "node": s.node,
            "rules": [
                [r.policy, r.rule, r.since, r.stats.packets, r.stats.bytes, r.stats.sessions]
                for r in s.rules
            ],
        },
        use_bin_type=True,
    )
    return out


def decode_summary(data: bytes) -> NodeStatsSummary:
    try:
        v = msgpack.unpackb(data, raw=False)
        if v["v"] != WIRE_VERSION:
            raise ValueError(f"wire version {v['v']!r}")
        node = v["node"]
        if not isinstance(node, str) or not node:
            raise ValueError("node must be a non-empty string")
        rules = []
        for policy, rule, since, packets, nbytes, sessions in v["rules"]:
            if not all(isinstance(x, str) for x in (policy, rule, since)):
                raise ValueError("policy, rule and since must be strings")
            counts = (packets, nbytes, sessions)
            if not all(type(x) is int and x >= 0 for x in counts):
                raise ValueError("counters must be non-negative integers")
            rules.append(RuleTraffic(policy, rule, since, TrafficStats(packets, nbytes, sessions)))
        return NodeStatsSummary(node, tuple(rules))
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"malformed stats summary: {exc!r}") from exc
