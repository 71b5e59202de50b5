"""Span: which nodes receive each object, and how it follows pod, label and policy changes."""

from __future__ import annotations

from npc_helpers import Mirror, pod, policy

from antrea.apis.controlplane.types import AppliedToGroup, Kind, NetworkPolicy
from antrea.controller.networkpolicy import Change, NetworkPolicyController

WEB = {"matchLabels": {"app": "web"}}
DB = {"matchLabels": {"app": "db"}}


def _span(c: NetworkPolicyController, kind: Kind, name: str) -> set[str]:
    entry = c.store.get(kind, name)
    assert entry is not None
    return set(entry[1])


def _setup() -> tuple[NetworkPolicyController, Mirror, str, str]:
    """db pods on n1/n2 accept traffic from web pods (on n3): returns (c, mirror, atg, ag)."""
    c = NetworkPolicyController()
    mirror = Mirror(c)
    c.add_pod(pod("ns", "db-1", {"app": "db"}, node="n1", ip="10.0.0.1"))
    c.add_pod(pod("ns", "db-2", {"app": "db"}, node="n2", ip="10.0.0.2"))
    c.add_pod(pod("ns", "web-1", {"app": "web"}, node="n3", ip="10.0.0.3"))
    c.add_network_policy(
        policy("ns", "db", {"podSelector": DB, "ingress": [{"from": [{"podSelector": WEB}]}]})
    )
    np = c.store.get(Kind.NETWORK_POLICY, "uid-ns-db")
    assert np is not None
    atg = c.store.names(Kind.APPLIED_TO_GROUP)[0]
    ag = c.store.names(Kind.ADDRESS_GROUP)[0]
    return c, mirror, atg, ag


def test_spans_follow_the_applied_to_pods() -> None:
    c, _, atg, ag = _setup()
    assert _span(c, Kind.APPLIED_TO_GROUP, atg) == {"n1", "n2"}
    assert _span(c, Kind.NETWORK_POLICY, "uid-ns-db") == {"n1", "n2"}
    # The AddressGroup goes where the policy using it applies, not where its members run.
    assert _span(c, Kind.ADDRESS_GROUP, ag) == {"n1", "n2"}


def test_pod_moving_between_nodes_moves_the_span() -> None:
    c, mirror, atg, ag = _setup()
    old = pod("ns", "db-2", {"app": "db"}, node="n2", ip="10.0.0.2")
    c.delete_pod(old)
    c.add_pod(pod("ns", "db-2", {"app": "db"}, node="n4", ip="10.0.0.9"))
    for kind, name in ((Kind.APPLIED_TO_GROUP, atg), (Kind.ADDRESS_GROUP, ag)):
        assert _span(c, kind, name) == {"n1", "n4"}
    assert _span(c, Kind.NETWORK_POLICY, "uid-ns-db") == {"n1", "n4"}
    # Same pod object updated in place with another node (and IP).
    c.update_pod(None, pod("ns", "db-1", {"app": "db"}, node="n4", ip="10.0.0.1"))
    assert _span(c, Kind.NETWORK_POLICY, "uid-ns-db") == {"n4"}
    assert mirror.objects[Kind.ADDRESS_GROUP][ag][1] == frozenset({"n4"})


def test_policy_that_stops_selecting_anything_has_an_empty_span() -> None:
    c, _, atg, ag = _setup()
    for name, node in (("db-1", "n1"), ("db-2", "n2")):
        c.update_pod(None, pod("ns", name, {"app": "other"}, node=node, ip="10.0.0.1"))
    assert _span(c, Kind.APPLIED_TO_GROUP, atg) == set()
    assert _span(c, Kind.NETWORK_POLICY, "uid-ns-db") == set()
    assert _span(c, Kind.ADDRESS_GROUP, ag) == set()
    # Objects stay in the store (no node receives them) until the policy is deleted.
    assert c.store.count(Kind.NETWORK_POLICY) == 1


def test_pod_losing_its_ip_or_terminating_leaves_the_span() -> None:
    c, _, atg, _ = _setup()
    c.update_pod(None, pod("ns", "db-1", {"app": "db"}, node="n1", ip=None))
    assert _span(c, Kind.APPLIED_TO_GROUP, atg) == {"n2"}
    c.update_pod(None, pod("ns", "db-2", {"app": "db"}, node="n2", phase="Failed"))
    assert _span(c, Kind.NETWORK_POLICY, "uid-ns-db") == set()
    c.update_pod(None, pod("ns", "db-1", {"app": "db"}, node="n1", ip="10.0.0.7"))
    assert _span(c, Kind.NETWORK_POLICY, "uid-ns-db") == {"n1"}


def test_shared_address_group_span_is_the_union_of_its_policies() -> None:
    c, _, _, ag = _setup()
    c.add_pod(pod("ns", "cache", {"app": "cache"}, node="n5", ip="10.0.0.5"))
    c.add_network_policy(
        policy(
            "ns",
            "cache",
            {
                "podSelector": {"matchLabels": {"app": "cache"}},
                "ingress": [{"from": [{"podSelector": WEB}]}],
            },
        )
    )
    assert c.store.count(Kind.ADDRESS_GROUP) == 1
    assert _span(c, Kind.ADDRESS_GROUP, ag) == {"n1", "n2", "n5"}
    c.delete_network_policy(policy("ns", "db", {}))
    assert _span(c, Kind.ADDRESS_GROUP, ag) == {"n5"}


def test_applied_to_group_per_node_view() -> None:
    c, _, atg, _ = _setup()
    view = c.store.applied_to_group_for_node(atg, "n1")
    assert isinstance(view, AppliedToGroup)
    assert {m.pod.name for m in view.members} == {"db-1"}
    entry = c.store.get(Kind.APPLIED_TO_GROUP, atg)
    assert entry is not None
    assert isinstance(entry[0], AppliedToGroup)
    assert len(entry[0].members) == 2  # the store holds every member


def test_change_order_groups_before_policies_and_deletions_after() -> None:
    c = NetworkPolicyController()
    seen: list[Change] = []
    c.subscribe(seen.append)
    c.add_pod(pod("ns", "db-1", {"app": "db"}))
    np = policy("ns", "db", {"podSelector": DB, "ingress": [{"from": [{"podSelector": WEB}]}]})
    c.add_network_policy(np)
    assert [ch.kind for ch in seen][-1] is Kind.NETWORK_POLICY
    assert all(ch.old is None for ch in seen)
    seen.clear()
    c.delete_network_policy(np)
    assert seen[0].kind is Kind.NETWORK_POLICY
    assert all(ch.new is None and not ch.new_span for ch in seen)
    assert len(seen) == 3


def test_address_group_patch_lists_added_and_removed_members() -> None:
    c, _, _, _ = _setup()
    seen: list[Change] = []
    c.subscribe(seen.append)
    c.add_pod(pod("ns", "web-2", {"app": "web"}, node="n1", ip="10.0.0.4"))
    (change,) = [ch for ch in seen if ch.kind is Kind.ADDRESS_GROUP]
    assert change.patch is not None
    assert {m.pod.name for m in change.patch.added} == {"web-2"}
    assert not change.patch.removed
    assert change.old_span == change.new_span


def test_rule_applied_to_groups_go_to_every_node_of_their_policy() -> None:
    """A node receiving a policy receives every AppliedToGroup it references.

    `namespaces: {match: Self}` gives each namespace its own rule with its own AppliedToGroup;
    a namespace with no pod on a node (here ``kube-system``, with no pod at all, and ``y``,
    only on n2) must still reach that node, or its agent waits for the group forever and the
    policy is never realized there. The agent then sees the group with no local member.
    """
    c = NetworkPolicyController()
    mirror = Mirror(c)
    for ns in ("kube-system", "x", "y"):
        c.add_namespace({"metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}})
    c.add_pod(pod("x", "a", {}, node="n1", ip="10.0.0.1"))
    c.add_pod(pod("x", "b", {}, node="n2", ip="10.0.0.2"))
    c.add_pod(pod("y", "a", {}, node="n2", ip="10.0.0.3"))
    c.add_cluster_network_policy(
        {
            "apiVersion": "crd.antrea.io/v1beta1",
            "kind": "ClusterNetworkPolicy",
            "metadata": {"name": "iso", "uid": "uid-iso", "generation": 1},
            "spec": {
                "priority": 1,
                "tier": "securityops",
                "appliedTo": [{"namespaceSelector": {}}],
                "ingress": [
                    {"action": "Pass", "from": [{"namespaces": {"match": "Self"}}]},
                    {"action": "Drop", "from": [{"namespaceSelector": {}}]},
                ],
            },
        }
    )

    def atgs_of_policy() -> set[str]:
        entry = c.store.get(Kind.NETWORK_POLICY, "uid-iso")
        assert entry is not None
        np = entry[0]
        assert isinstance(np, NetworkPolicy)
        return {g for r in np.rules for g in r.applied_to_groups} | set(np.applied_to_groups)

    assert _span(c, Kind.NETWORK_POLICY, "uid-iso") == {"n1", "n2"}
    names = atgs_of_policy()
    assert len(names) == 4  # one per namespace (kube-system, x, y) and the Drop rule's
    for name in names:
        assert _span(c, Kind.APPLIED_TO_GROUP, name) == {"n1", "n2"}, name
        assert mirror.objects[Kind.APPLIED_TO_GROUP][name][1] == frozenset({"n1", "n2"})
    # The policy leaving n1 takes its groups with it; coming back brings them back.
    c.delete_pod(pod("x", "a", {}, node="n1", ip="10.0.0.1"))
    for name in atgs_of_policy():
        assert _span(c, Kind.APPLIED_TO_GROUP, name) == {"n2"}, name
        assert mirror.objects[Kind.APPLIED_TO_GROUP][name][1] == frozenset({"n2"})
    c.add_pod(pod("x", "a", {}, node="n1", ip="10.0.0.1"))
    for name in atgs_of_policy():
        assert mirror.objects[Kind.APPLIED_TO_GROUP][name][1] == frozenset({"n1", "n2"})
    # Deleting the policy deletes them.
    c.delete_cluster_network_policy(
        {"metadata": {"name": "iso", "uid": "uid-iso"}, "kind": "ClusterNetworkPolicy"}
    )
    assert not mirror.objects[Kind.APPLIED_TO_GROUP]
