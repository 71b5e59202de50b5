"""What the server serves: one `ResourceType` per (group, version, resource).

Built-in types are a fixed table; CustomResourceDefinitions add and remove entries at run
time (`Registry.register_crd`). Storage is keyed by (group, resource) only, so every served
version of a custom resource shares one set of objects; like a CRD with the ``None``
conversion strategy, only ``apiVersion`` differs between versions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True, slots=True)
class ResourceType:
    """A served resource and the semantics the generic handlers need to know about it."""

    group: str
    version: str
    resource: str
    kind: str
    namespaced: bool
    singular: str
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    status_subresource: bool = False
    # metadata.generation is maintained (bumped when the spec changes).
    generation: bool = False
    # PUT of a missing object creates it (endpoints, events upstream).
    create_on_update: bool = False
    # Not stored at all (tokenreviews): only create, answered by a special handler.
    virtual: bool = False
    custom: bool = False
    printer_columns: tuple[JSON, ...] = field(default=(), compare=False)
    # A custom resource version's openAPIV3Schema (pruning, defaults, validation).
    schema: JSON | None = field(default=None, compare=False)

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> tuple[str, str]:
        """Storage key: all versions of a group's resource share objects."""
        return (self.group, self.resource)

    def discovery_entries(self) -> list[JSON]:
        """APIResource entries for the group/version resource list."""
        main: JSON = {
            "name": self.resource,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(self.verbs),
        }
        if self.short_names:
            main["shortNames"] = list(self.short_names)
        if self.categories:
            main["categories"] = list(self.categories)
        entries = [main]
        if self.status_subresource:
            entries.append(
                {
                    "name": f"{self.resource}/status",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "kind": self.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
        if self.group == "" and self.resource == "pods":
            entries.append(
                {
                    "name": "pods/binding",
                    "singularName": "",
                    "namespaced": True,
                    "kind": "Binding",
                    "verbs": ["create"],
                }
            )
            entries.append(
                {
                    "name": "pods/exec",
                    "singularName": "",
                    "namespaced": True,
                    "kind": "PodExecOptions",
                    "verbs": ["create", "get"],
                }
            )
            entries.append(
                {
                    "name": "pods/log",
                    "singularName": "",
                    "namespaced": True,
                    "kind": "Pod",
                    "verbs": ["get"],
                }
            )
        return entries


def _core(resource: str, kind: str, **kw: Any) -> ResourceType:
    return ResourceType(group="", version="v1", resource=resource, kind=kind, **kw)


BUILTINS: tuple[ResourceType, ...] = (
    _core(
        "namespaces",
        "Namespace",
        namespaced=False,
        singular="namespace",
        short_names=("ns",),
        verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
        status_subresource=True,
    ),
    _core(
        "pods",
        "Pod",
        namespaced=True,
        singular="pod",
        short_names=("po",),
        categories=("all",),
        status_subresource=True,
        generation=True,
    ),
    _core(
        "nodes",
        "Node",
        namespaced=False,
        singular="node",
        short_names=("no",),
        status_subresource=True,
    ),
    _core(
        "services",
        "Service",
        namespaced=True,
        singular="service",
        short_names=("svc",),
        categories=("all",),
        status_subresource=True,
        verbs=("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"),
    ),
    _core(
        "endpoints",
        "Endpoints",
        namespaced=True,
        singular="endpoints",
        short_names=("ep",),
        create_on_update=True,
    ),
    _core(
        "serviceaccounts",
        "ServiceAccount",
        namespaced=True,
        singular="serviceaccount",
        short_names=("sa",),
    ),
    _core("configmaps", "ConfigMap", namespaced=True, singular="configmap", short_names=("cm",)),
    _core("secrets", "Secret", namespaced=True, singular="secret"),
    _core(
        "events",
        "Event",
        namespaced=True,
        singular="event",
        short_names=("ev",),
        create_on_update=True,
    ),
    ResourceType(
        group="networking.k8s.io",
        version="v1",
        resource="networkpolicies",
        kind="NetworkPolicy",
        namespaced=True,
        singular="networkpolicy",
        short_names=("netpol",),
        generation=True,
    ),
    ResourceType(
        group="discovery.k8s.io",
        version="v1",
        resource="endpointslices",
        kind="EndpointSlice",
        namespaced=True,
        singular="endpointslice",
    ),
    # Stored only (no controllers run them): enough to `kubectl apply` deploy/antrea.yml.
    ResourceType(
        group="apps",
        version="v1",
        resource="daemonsets",
        kind="DaemonSet",
        namespaced=True,
        singular="daemonset",
        short_names=("ds",),
        categories=("all",),
        status_subresource=True,
        generation=True,
    ),
    ResourceType(
        group="apps",
        version="v1",
        resource="deployments",
        kind="Deployment",
        namespaced=True,
        singular="deployment",
        short_names=("deploy",),
        categories=("all",),
        status_subresource=True,
        generation=True,
    ),
    *(
        ResourceType(
            group="rbac.authorization.k8s.io",
            version="v1",
            resource=resource,
            kind=kind,
            namespaced=namespaced,
            singular=kind.lower(),
        )
        for resource, kind, namespaced in (
            ("clusterroles", "ClusterRole", False),
            ("clusterrolebindings", "ClusterRoleBinding", False),
            ("roles", "Role", True),
            ("rolebindings", "RoleBinding", True),
        )
    ),
    ResourceType(
        group="coordination.k8s.io",
        version="v1",
        resource="leases",
        kind="Lease",
        namespaced=True,
        singular="lease",
    ),
    ResourceType(
        group="authentication.k8s.io",
        version="v1",
        resource="selfsubjectreviews",
        kind="SelfSubjectReview",
        namespaced=False,
        singular="selfsubjectreview",
        verbs=("create",),
        virtual=True,
    ),
    ResourceType(
        group="authorization.k8s.io",
        version="v1",
        resource="selfsubjectaccessreviews",
        kind="SelfSubjectAccessReview",
        namespaced=False,
        singular="selfsubjectaccessreview",
        verbs=("create",),
        virtual=True,
    ),
    *(
        ResourceType(
            group="authorization.k8s.io",
            version="v1",
            resource=resource,
            kind=kind,
            namespaced=namespaced,
            singular=kind.lower(),
            verbs=("create",),
            virtual=True,
        )
        for resource, kind, namespaced in (
            ("subjectaccessreviews", "SubjectAccessReview", False),
            ("localsubjectaccessreviews", "LocalSubjectAccessReview", True),
            ("selfsubjectrulesreviews", "SelfSubjectRulesReview", False),
        )
    ),
    ResourceType(
        group="authentication.k8s.io",
        version="v1",
        resource="tokenreviews",
        kind="TokenReview",
        namespaced=False,
        singular="tokenreview",
        verbs=("create",),
        virtual=True,
    ),
    *(
        ResourceType(
            group="admissionregistration.k8s.io",
            version="v1",
            resource=resource,
            kind=kind,
            namespaced=False,
            singular=kind.lower(),
            categories=("api-extensions",),
        )
        for resource, kind in (
            ("validatingwebhookconfigurations", "ValidatingWebhookConfiguration"),
            ("mutatingwebhookconfigurations", "MutatingWebhookConfiguration"),
        )
    ),
    ResourceType(
        group="apiextensions.k8s.io",
        version="v1",
        resource="customresourcedefinitions",
        kind="CustomResourceDefinition",
        namespaced=False,
        singular="customresourcedefinition",
        short_names=("crd", "crds"),
        categories=("api-extensions",),
        status_subresource=True,
        generation=True,
    ),
)


class Registry:
    """Lookup of served resources by URL coordinates and by kind."""

    def __init__(self) -> None:
        self._by_gvr: dict[tuple[str, str, str], ResourceType] = {}
        # group -> ordered versions (preferred first)
        self._versions: dict[str, list[str]] = {}
        self._crd_types: dict[str, list[ResourceType]] = {}
        for rt in BUILTINS:
            self._add(rt)

    def _add(self, rt: ResourceType) -> None:
        self._by_gvr[(rt.group, rt.version, rt.resource)] = rt
        versions = self._versions.setdefault(rt.group, [])
        if rt.version not in versions:
            versions.append(rt.version)

    def _rebuild_versions(self) -> None:
        self._versions = {}
        for rt in self._by_gvr.values():
            versions = self._versions.setdefault(rt.group, [])
            if rt.version not in versions:
                versions.append(rt.version)

    def get(self, group: str, version: str, resource: str) -> ResourceType | None:
        return self._by_gvr.get((group, version, resource))

    def has_group_version(self, group: str, version: str) -> bool:
        return version in self._versions.get(group, ())

    def groups(self) -> dict[str, list[str]]:
        return {g: list(v) for g, v in self._versions.items()}

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [rt for rt in self._by_gvr.values() if rt.group == group and rt.version == version]

    def storage_types(self) -> Iterator[ResourceType]:
        """One ResourceType per stored (group, resource)."""
        seen: set[tuple[str, str]] = set()
        for rt in self._by_gvr.values():
            if rt.key not in seen and not rt.virtual:
                seen.add(rt.key)
                yield rt

    def any_version(self, group: str, resource: str) -> ResourceType | None:
        for rt in self._by_gvr.values():
            if rt.group == group and rt.resource == resource:
                return rt
        return None

    # -- CustomResourceDefinitions -------------------------------------------------------

    def register_crd(self, crd: JSON) -> list[ResourceType]:
        """(Re)register the served versions of a CRD; returns the new types."""
        name = crd["metadata"]["name"]
        self.unregister_crd(name)
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        group = spec.get("group", "")
        types: list[ResourceType] = []
        versions = sorted(
            spec.get("versions") or [],
            key=lambda v: (not v.get("storage", False), _version_priority(v.get("name", ""))),
        )
        for ver in versions:
            if not ver.get("served", True):
                continue
            subresources = ver.get("subresources") or {}
            rt = ResourceType(
                group=group,
                version=ver["name"],
                resource=names.get("plural", ""),
                kind=names.get("kind", ""),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                singular=names.get("singular") or names.get("kind", "").lower(),
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                status_subresource="status" in subresources,
                generation=True,
                custom=True,
                printer_columns=tuple(ver.get("additionalPrinterColumns") or ()),
                schema=(ver.get("schema") or {}).get("openAPIV3Schema"),
            )
            types.append(rt)
        # Preferred version first: upstream orders by the Kubernetes version priority.
        types.sort(key=lambda t: _version_priority(t.version))
        for rt in types:
            self._add(rt)
        self._crd_types[name] = types
        self._rebuild_versions()
        for group_name, vers in self._versions.items():
            vers.sort(key=_version_priority)
            self._versions[group_name] = vers
        return types

    def unregister_crd(self, name: str) -> list[ResourceType]:
        old = self._crd_types.pop(name, [])
        for rt in old:
            self._by_gvr.pop((rt.group, rt.version, rt.resource), None)
        if old:
            self._rebuild_versions()
        return old


def _version_priority(version: str) -> tuple[int, int, int, str]:
    """Kubernetes version ordering: GA > beta > alpha, higher numbers first, then others."""
    import re

    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not m:
        return (3, 0, 0, version)
    major = int(m.group(1))
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    minor = int(m.group(3) or 0)
    return (stage, -major, -minor, version)
