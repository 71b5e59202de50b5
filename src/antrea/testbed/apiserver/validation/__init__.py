"""Object validation as kube-apiserver performs it, and the 422 Status it answers with.

A faithful subset of ``pkg/apis/*/validation``: every check here exists upstream with the same
field path, error type and message, so a client (kubectl, the lab, our tests) sees the same
rejection from the embedded server as from a real cluster, and nothing the lab writes passes here
but fails there. NetworkPolicy is validated in full (it is the product's input); other kinds get
the checks that catch real mistakes (names, labels, ports, protocols, immutable fields) without
reproducing rules that only concern features this project does not serve.

`validate` expects the object after the server's defaulting (protocol defaults to TCP, ...), as
upstream validates after defaulting.

Layout: `errors` (``field.Error`` and the Status), `metadata` (ObjectMeta, labels, selectors),
one module per group of kinds (`networkpolicy`, `core`, `crd`), and here the table mapping each
served kind to its rules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from antrea.k8s.names import (
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_path_segment_name,
)
from antrea.testbed.apiserver.validation.core import (
    validate_configmap,
    validate_endpoints,
    validate_lease,
    validate_namespace,
    validate_node,
    validate_pod,
    validate_pod_spec,
    validate_secret,
    validate_service,
)
from antrea.testbed.apiserver.validation.crd import validate_crd
from antrea.testbed.apiserver.validation.errors import (
    DUPLICATE,
    FORBIDDEN,
    INVALID,
    JSON,
    NOT_FOUND,
    NOT_SUPPORTED,
    REQUIRED,
    TOO_LONG,
    TOO_MANY,
    FieldError,
    duplicate,
    field_errors_to_status,
    forbidden,
    invalid,
    not_supported,
    required,
)
from antrea.testbed.apiserver.validation.metadata import (
    NameFn,
    validate_annotations,
    validate_label_selector,
    validate_labels,
    validate_object_meta,
    validate_object_meta_update,
)
from antrea.testbed.apiserver.validation.networkpolicy import (
    validate_network_policy,
    validate_network_policy_spec,
)

__all__ = [
    "DUPLICATE",
    "FORBIDDEN",
    "INVALID",
    "NOT_FOUND",
    "NOT_SUPPORTED",
    "REQUIRED",
    "TOO_LONG",
    "TOO_MANY",
    "FieldError",
    "duplicate",
    "field_errors_to_status",
    "forbidden",
    "invalid",
    "is_valid_object",
    "not_supported",
    "required",
    "validate",
    "validate_annotations",
    "validate_label_selector",
    "validate_labels",
    "validate_network_policy_spec",
    "validate_object_meta",
    "validate_object_meta_update",
    "validate_pod_spec",
]


def _no_checks(obj: JSON, old: JSON | None) -> list[FieldError]:
    return []


_KindFn = Callable[[JSON, "JSON | None"], list[FieldError]]


@dataclass(frozen=True)
class _KindRules:
    name_fn: NameFn
    namespaced: bool
    check: _KindFn
    meta: bool = True


_CORE = ""
_RULES: dict[tuple[str, str], _KindRules] = {
    (_CORE, "Pod"): _KindRules(is_dns1123_subdomain, True, validate_pod),
    (_CORE, "Namespace"): _KindRules(is_dns1123_label, False, validate_namespace),
    (_CORE, "Node"): _KindRules(is_dns1123_subdomain, False, validate_node),
    (_CORE, "Service"): _KindRules(is_dns1035_label, True, validate_service),
    (_CORE, "Endpoints"): _KindRules(is_dns1123_subdomain, True, validate_endpoints),
    (_CORE, "ServiceAccount"): _KindRules(is_dns1123_subdomain, True, _no_checks),
    (_CORE, "ConfigMap"): _KindRules(is_dns1123_subdomain, True, validate_configmap),
    (_CORE, "Secret"): _KindRules(is_dns1123_subdomain, True, validate_secret),
    (_CORE, "Event"): _KindRules(is_dns1123_subdomain, True, _no_checks),
    ("networking.k8s.io", "NetworkPolicy"): _KindRules(
        is_dns1123_subdomain, True, validate_network_policy
    ),
    ("coordination.k8s.io", "Lease"): _KindRules(is_dns1123_subdomain, True, validate_lease),
    ("apiextensions.k8s.io", "CustomResourceDefinition"): _KindRules(
        is_dns1123_subdomain, False, validate_crd
    ),
    ("authentication.k8s.io", "TokenReview"): _KindRules(
        is_dns1123_subdomain, False, _no_checks, meta=False
    ),
}


def validate(group: str, kind: str, obj: JSON, old: JSON | None) -> list[FieldError]:
    """Every problem kube-apiserver would report for creating (``old`` None) or updating
    ``obj``; an empty list means valid. Unknown kinds are custom resources: metadata only."""
    rules = _RULES.get((group, kind))
    if rules is None:
        errs = validate_object_meta(obj, name_fn=is_path_segment_name, namespaced=None)
        if old is not None:
            errs.extend(validate_object_meta_update(obj, old))
        return errs
    errs = []
    if rules.meta:
        errs.extend(validate_object_meta(obj, name_fn=rules.name_fn, namespaced=rules.namespaced))
        if old is not None:
            errs.extend(validate_object_meta_update(obj, old))
    errs.extend(rules.check(obj, old))
    return errs


def is_valid_object(group: str, kind: str, obj: Mapping[str, Any]) -> bool:
    """Convenience for clients (the lab) that only need a yes/no before writing."""
    return not validate(group, kind, dict(obj), None)
