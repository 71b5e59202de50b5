"""Write our own conformance cases (tests/e2e/netpol/cases/*.yaml) with oracle-computed tables.

The policies and steps below are hand-written to cover what the shared cases do not: every peer
form, matchExpressions operators, named ports in both directions, endPort, ipBlock with except
in both directions, policy updates, pod and namespace relabelling, stacked policies, ingress and
egress together, UDP. The expected matrices come from the reference evaluator (oracle.py), which
tests/unit/agent/networkpolicy/test_oracle.py checks against every upstream-derived case.

Run ``python tests/e2e/netpol/gen_cases.py`` after editing; the YAML files are committed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import casegen
import simulate

OUT = Path(__file__).resolve().parent / "cases"
TCP80, TCP81, UDP80, UDP81 = ("TCP", 80), ("TCP", 81), ("UDP", 80), ("UDP", 81)


def np(ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def pods(*names: str) -> dict[str, Any]:
    return {"matchExpressions": [{"key": "pod", "operator": "In", "values": list(names)}]}


def labels(**kv: str) -> dict[str, Any]:
    return {"matchLabels": dict(kv)}


CASES: list[dict[str, Any]] = [
    {
        "id": "101",
        "slug": "match-expressions-all-operators",
        "name": "peers selected with In, NotIn, Exists and DoesNotExist",
        "steps": [
            {
                "apply": [
                    np(
                        "x",
                        "exprs",
                        {
                            "podSelector": labels(pod="a"),
                            "policyTypes": ["Ingress"],
                            "ingress": [
                                {
                                    "from": [
                                        {
                                            "namespaceSelector": {
                                                "matchExpressions": [
                                                    {
                                                        "key": "ns",
                                                        "operator": "NotIn",
                                                        "values": ["x"],
                                                    }
                                                ]
                                            },
                                            "podSelector": {
                                                "matchExpressions": [
                                                    {
                                                        "key": "pod",
                                                        "operator": "In",
                                                        "values": ["b", "c"],
                                                    }
                                                ]
                                            },
                                        },
                                        {
                                            "podSelector": {
                                                "matchExpressions": [
                                                    {"key": "pod", "operator": "Exists"},
                                                    {"key": "role", "operator": "DoesNotExist"},
                                                ]
                                            }
                                        },
                                    ]
                                }
                            ],
                        },
                    ),
                ],
                "probes": [TCP80],
            },
            {
                "description": "x/b gets role=admin: DoesNotExist no longer selects it",
                "relabel": {"pods": [{"pod": "x/b", "set": {"role": "admin"}}]},
                "probes": [TCP80],
            },
        ],
    },
    {
        "id": "102",
        "slug": "empty-namespace-selector-one-port-udp",
        "name": "ingress from every namespace (empty namespaceSelector) on UDP 81 only",
        "steps": [
            {
                "apply": [
                    np(
                        "y",
                        "udp81-from-all",
                        {
                            "podSelector": {},
                            "ingress": [
                                {
                                    "from": [{"namespaceSelector": {}}],
                                    "ports": [{"protocol": "UDP", "port": 81}],
                                }
                            ],
                        },
                    ),
                ],
                "probes": [UDP81, UDP80, TCP81],
            }
        ],
    },
    {
        "id": "103",
        "slug": "egress-named-port",
        "name": "egress to a named port resolved on the destination pods",
        "steps": [
            {
                "apply": [
                    np(
                        "x",
                        "egress-named",
                        {
                            "podSelector": labels(pod="a"),
                            "policyTypes": ["Egress"],
                            "egress": [
                                {"ports": [{"protocol": "UDP", "port": "serve-81-udp"}]},
                                {
                                    "to": [{"namespaceSelector": labels(ns="z")}],
                                    "ports": [{"port": "serve-80-tcp"}],
                                },
                            ],
                        },
                    ),
                ],
                "probes": [UDP81, UDP80, TCP80, TCP81],
            }
        ],
    },
    {
        "id": "104",
        "slug": "end-port-range",
        "name": "ingress on a port range (endPort) that starts above 80",
        "steps": [
            {
                "apply": [
                    np(
                        "y",
                        "range",
                        {
                            "podSelector": labels(pod="b"),
                            "ingress": [
                                {"ports": [{"protocol": "TCP", "port": 81, "endPort": 1000}]}
                            ],
                        },
                    ),
                ],
                "probes": [TCP80, TCP81],
            },
            {
                "description": "range widened to 80-81, UDP added",
                "apply": [
                    np(
                        "y",
                        "range",
                        {
                            "podSelector": labels(pod="b"),
                            "ingress": [
                                {
                                    "ports": [
                                        {"protocol": "TCP", "port": 80, "endPort": 81},
                                        {"protocol": "UDP", "port": 80},
                                    ]
                                }
                            ],
                        },
                    ),
                ],
                "probes": [TCP80, UDP80, UDP81],
            },
        ],
    },
    {
        "id": "105",
        "slug": "ingress-ipblock-except",
        "name": "ingress from an ipBlock with except",
        "steps": [
            {
                "apply": [
                    np(
                        "z",
                        "from-cidr",
                        {
                            "podSelector": labels(pod="c"),
                            "ingress": [
                                {
                                    "from": [
                                        {
                                            "ipBlock": {
                                                "cidr": "{{supernet x/a 4}}",
                                                "except": ["{{ip y/b}}/32", "{{ip x/c}}/32"],
                                            }
                                        }
                                    ]
                                }
                            ],
                        },
                    ),
                ],
                "probes": [TCP80],
            }
        ],
    },
    {
        "id": "106",
        "slug": "egress-deny-then-allow",
        "name": "egress deny-all in a namespace, then an allow policy stacked on top",
        "steps": [
            {
                "apply": [np("x", "deny-egress", {"podSelector": {}, "policyTypes": ["Egress"]})],
                "probes": [TCP80],
            },
            {
                "description": "allow egress to namespace y on TCP 80",
                "apply": [
                    np(
                        "x",
                        "allow-to-y",
                        {
                            "podSelector": {},
                            "policyTypes": ["Egress"],
                            "egress": [
                                {
                                    "to": [{"namespaceSelector": labels(ns="y")}],
                                    "ports": [{"port": 80}],
                                }
                            ],
                        },
                    ),
                ],
                "probes": [TCP80, TCP81],
            },
            {
                "description": "the deny-all goes away: the allow policy alone still isolates",
                "delete": [{"namespace": "x", "name": "deny-egress"}],
                "probes": [TCP80],
            },
        ],
    },
    {
        "id": "107",
        "slug": "stacked-ingress-policies",
        "name": "two ingress policies on the same pod are a union",
        "steps": [
            {
                "apply": [
                    np(
                        "x",
                        "from-y",
                        {
                            "podSelector": labels(pod="a"),
                            "ingress": [{"from": [{"namespaceSelector": labels(ns="y")}]}],
                        },
                    ),
                    np(
                        "x",
                        "from-zb-81",
                        {
                            "podSelector": labels(pod="a"),
                            "ingress": [
                                {
                                    "from": [
                                        {
                                            "namespaceSelector": labels(ns="z"),
                                            "podSelector": labels(pod="b"),
                                        }
                                    ],
                                    "ports": [{"port": 81}],
                                }
                            ],
                        },
                    ),
                ],
                "probes": [TCP80, TCP81],
            },
            {
                "description": "first policy deleted",
                "delete": [{"namespace": "x", "name": "from-y"}],
                "probes": [TCP80, TCP81],
            },
        ],
    },
    {
        "id": "108",
        "slug": "pod-relabel-peer-and-target",
        "name": "relabelling pods changes both peers and targets",
        "steps": [
            {
                "apply": [
                    np(
                        "x",
                        "clients-only",
                        {
                            "podSelector": labels(role="server"),
                            "ingress": [
                                {
                                    "from": [
                                        {
                                            "namespaceSelector": {},
                                            "podSelector": labels(role="client"),
                                        }
                                    ]
                                }
                            ],
                        },
                    ),
                ],
                "relabel": {"pods": [{"pod": "x/a", "set": {"role": "server"}}]},
                "probes": [TCP80],
            },
            {
                "description": "y/b becomes a client",
                "relabel": {"pods": [{"pod": "y/b", "set": {"role": "client"}}]},
                "probes": [TCP80],
            },
            {
                "description": "x/c becomes a server too; y/b stops being a client",
                "relabel": {
                    "pods": [
                        {"pod": "x/c", "set": {"role": "server"}},
                        {"pod": "y/b", "remove": ["role"]},
                        {"pod": "z/c", "set": {"role": "client"}},
                    ]
                },
                "probes": [TCP80],
            },
        ],
    },
    {
        "id": "109",
        "slug": "namespace-relabel",
        "name": "relabelling a namespace adds and removes its pods as peers",
        "steps": [
            {
                "apply": [
                    np(
                        "x",
                        "from-blue",
                        {
                            "podSelector": {},
                            "ingress": [{"from": [{"namespaceSelector": labels(team="blue")}]}],
                        },
                    ),
                ],
                "probes": [TCP80],
            },
            {
                "description": "z joins team blue",
                "relabel": {"namespaces": [{"namespace": "z", "set": {"team": "blue"}}]},
                "probes": [TCP80],
            },
            {
                "description": "z leaves, y joins",
                "relabel": {
                    "namespaces": [
                        {"namespace": "z", "remove": ["team"]},
                        {"namespace": "y", "set": {"team": "blue"}},
                    ]
                },
                "probes": [TCP80],
            },
        ],
    },
    {
        "id": "110",
        "slug": "policy-update-selector-and-types",
        "name": "a policy updated in place: new podSelector, then Egress added to policyTypes",
        "steps": [
            {
                "apply": [
                    np(
                        "y",
                        "upd",
                        {
                            "podSelector": labels(pod="a"),
                            "ingress": [{"from": [{"podSelector": labels(pod="b")}]}],
                        },
                    )
                ],
                "probes": [TCP80],
            },
            {
                "description": "now applies to y/c",
                "apply": [
                    np(
                        "y",
                        "upd",
                        {
                            "podSelector": labels(pod="c"),
                            "ingress": [{"from": [{"podSelector": labels(pod="b")}]}],
                        },
                    )
                ],
                "probes": [TCP80],
            },
            {
                "description": "Egress isolation added, egress only to namespace x",
                "apply": [
                    np(
                        "y",
                        "upd",
                        {
                            "podSelector": labels(pod="c"),
                            "policyTypes": ["Ingress", "Egress"],
                            "ingress": [{"from": [{"podSelector": labels(pod="b")}]}],
                            "egress": [{"to": [{"namespaceSelector": labels(ns="x")}]}],
                        },
                    )
                ],
                "probes": [TCP80],
            },
        ],
    },
    {
        "id": "111",
        "slug": "ingress-egress-across-namespaces",
        "name": "egress allowed by one side, ingress denied by the other",
        "steps": [
            {
                "apply": [
                    np(
                        "y",
                        "y-egress-to-x",
                        {
                            "podSelector": {},
                            "policyTypes": ["Egress"],
                            "egress": [{"to": [{"namespaceSelector": labels(ns="x")}]}],
                        },
                    ),
                    np(
                        "x",
                        "xa-from-yc",
                        {
                            "podSelector": labels(pod="a"),
                            "ingress": [
                                {
                                    "from": [
                                        {
                                            "namespaceSelector": labels(ns="y"),
                                            "podSelector": labels(pod="c"),
                                        }
                                    ],
                                    "ports": [{"port": 80}],
                                }
                            ],
                        },
                    ),
                ],
                "probes": [TCP80, TCP81],
            }
        ],
    },
    {
        "id": "112",
        "slug": "allow-all-egress-deny-ingress",
        "name": "egress [{}] allows everything while ingress is denied",
        "steps": [
            {
                "apply": [
                    np(
                        "z",
                        "eg-all",
                        {"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "egress": [{}]},
                    )
                ],
                "probes": [TCP80, UDP81],
            }
        ],
    },
    {
        "id": "113",
        "slug": "egress-to-ipblocks",
        "name": "egress to single-address ipBlocks on one port, and to a CIDR with except",
        "steps": [
            {
                "apply": [
                    np(
                        "x",
                        "to-ips",
                        {
                            "podSelector": labels(pod="b"),
                            "policyTypes": ["Egress"],
                            "egress": [
                                {
                                    "to": [
                                        {"ipBlock": {"cidr": "{{ip z/a}}/32"}},
                                        {"ipBlock": {"cidr": "{{ip y/c}}/32"}},
                                    ],
                                    "ports": [{"port": 81}],
                                },
                                {
                                    "to": [
                                        {
                                            "ipBlock": {
                                                "cidr": "{{supernet z/b 4}}",
                                                "except": ["{{ip z/b}}/32"],
                                            }
                                        }
                                    ],
                                    "ports": [{"port": 80}],
                                },
                            ],
                        },
                    )
                ],
                "probes": [TCP80, TCP81],
            }
        ],
    },
    {
        "id": "114",
        "slug": "ingress-named-udp-and-numeric-tcp",
        "name": "one rule with a named UDP port and a numeric TCP port",
        "steps": [
            {
                "apply": [
                    np(
                        "x",
                        "mixed",
                        {
                            "podSelector": {},
                            "ingress": [
                                {
                                    "from": [{"namespaceSelector": labels(ns="z")}],
                                    "ports": [
                                        {"protocol": "UDP", "port": "serve-80-udp"},
                                        {"protocol": "TCP", "port": 81},
                                    ],
                                }
                            ],
                        },
                    )
                ],
                "probes": [UDP80, UDP81, TCP80, TCP81],
            }
        ],
    },
    {
        "id": "115",
        "slug": "delete-restores-connectivity",
        "name": "deleting every policy restores full connectivity (no stale flows)",
        "steps": [
            {
                "apply": [
                    np("x", "deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
                    np("y", "deny-in", {"podSelector": {}}),
                ],
                "probes": [TCP80],
            },
            {"description": "all deleted", "delete": "all", "probes": [TCP80, UDP80]},
        ],
    },
    {
        "id": "116",
        "slug": "same-namespace-only",
        "name": "empty podSelector peer: every pod of the policy's namespace only",
        "steps": [
            {
                "apply": [
                    np(
                        "z",
                        "ns-local",
                        {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]},
                    )
                ],
                "probes": [TCP80],
            }
        ],
    },
    {
        "id": "117",
        "slug": "multiple-rules-and-peers",
        "name": "several rules (OR) each with several peers (OR) and different ports",
        "steps": [
            {
                "apply": [
                    np(
                        "y",
                        "multi",
                        {
                            "podSelector": pods("a", "b"),
                            "ingress": [
                                {
                                    "from": [
                                        {"podSelector": labels(pod="c")},
                                        {
                                            "namespaceSelector": labels(ns="x"),
                                            "podSelector": labels(pod="a"),
                                        },
                                    ],
                                    "ports": [{"port": 80}],
                                },
                                {
                                    "from": [{"namespaceSelector": labels(ns="z")}],
                                    "ports": [{"port": 81}],
                                },
                                {"from": [{"ipBlock": {"cidr": "{{ip x/b}}/32"}}]},
                            ],
                        },
                    )
                ],
                "probes": [TCP80, TCP81],
            }
        ],
    },
]


def main() -> None:
    casegen.write(CASES, OUT, simulate.expected_steps)


if __name__ == "__main__":
    main()
