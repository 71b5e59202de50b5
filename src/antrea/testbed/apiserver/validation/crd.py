"""CustomResourceDefinition (``apiextensions/validation``): names, scope, versions."""

from __future__ import annotations

from antrea.k8s.names import is_dns1035_label, is_dns1123_subdomain
from antrea.testbed.apiserver.validation.common import as_dict, as_list, dicts
from antrea.testbed.apiserver.validation.errors import (
    JSON,
    FieldError,
    duplicate,
    invalid,
    not_supported,
    required,
)


def validate_crd(obj: JSON, old: JSON | None) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec", "")]
    group = str(spec.get("group") or "")
    names = as_dict(spec.get("names"))
    plural = str(names.get("plural") or "")
    name = str(as_dict(obj.get("metadata")).get("name") or "")
    if name != f"{plural}.{group}":
        errs.append(invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    if not group:
        errs.append(required("spec.group", ""))
    else:
        errs.extend(invalid("spec.group", group, m) for m in is_dns1123_subdomain(group))
        if "." not in group:
            errs.append(invalid("spec.group", group, "should be a domain with at least one dot"))
    for key in ("plural", "singular"):
        value = str(names.get(key) or "")
        if not value:
            if key == "plural":
                errs.append(required(f"spec.names.{key}", ""))
            continue
        msgs = is_dns1035_label(value)
        if msgs:
            errs.append(invalid(f"spec.names.{key}", value, ",".join(msgs)))
    for key in ("kind", "listKind"):
        if not names.get(key):
            errs.append(required(f"spec.names.{key}", ""))
    scope = spec.get("scope")
    if scope not in ("Cluster", "Namespaced"):
        if not scope:
            errs.append(required("spec.scope", ""))
        else:
            errs.append(not_supported("spec.scope", scope, ("Cluster", "Namespaced")))
    versions = as_list(spec.get("versions"))
    if not versions:
        errs.append(
            invalid(
                "spec.versions", versions, "must have exactly one version marked as storage version"
            )
        )
    storage = 0
    seen: set[str] = set()
    for i, version in dicts(versions):
        vpath = f"spec.versions[{i}]"
        vname = str(version.get("name") or "")
        if not vname:
            errs.append(required(f"{vpath}.name", ""))
        else:
            errs.extend(invalid(f"{vpath}.name", vname, m) for m in is_dns1035_label(vname))
            if vname in seen:
                errs.append(duplicate(f"{vpath}.name", vname))
            seen.add(vname)
        if version.get("storage"):
            storage += 1
        if not isinstance(as_dict(version.get("schema")).get("openAPIV3Schema"), dict):
            errs.append(required(f"{vpath}.schema.openAPIV3Schema", "schemas are required"))
    if versions and storage != 1:
        errs.append(
            invalid(
                "spec.versions",
                [str(as_dict(v).get("name")) for v in versions],
                "must have exactly one version marked as storage version",
            )
        )
    if old is not None:
        ospec = as_dict(old.get("spec"))
        if ospec.get("group") and ospec.get("group") != group:
            errs.append(invalid("spec.group", group, "field is immutable"))
        oplural = as_dict(ospec.get("names")).get("plural")
        if oplural and oplural != plural:
            errs.append(invalid("spec.names.plural", plural, "field is immutable"))
    return errs
