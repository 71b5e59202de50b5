"""``ObjectMeta``, labels, annotations and label selectors (``metav1validation``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from antrea.k8s.names import is_dns1123_label, is_qualified_name, is_valid_label_value
from antrea.testbed.apiserver.validation.common import as_dict, as_list, dicts, int_value
from antrea.testbed.apiserver.validation.errors import (
    JSON,
    TOO_LONG,
    FieldError,
    forbidden,
    invalid,
    required,
)

TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024


def validate_labels(labels: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for key, value in as_dict(labels).items():
        errs.extend(invalid(path, key, m) for m in is_qualified_name(str(key)))
        if not isinstance(value, str):
            errs.append(invalid(path, value, "label values must be strings"))
            continue
        errs.extend(invalid(path, value, m) for m in is_valid_label_value(value))
    return errs


def validate_annotations(annotations: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    anns = as_dict(annotations)
    for key in anns:
        # Case does not matter for annotation keys: upstream lowercases before checking.
        errs.extend(invalid(path, key, m) for m in is_qualified_name(str(key).lower()))
    size = sum(len(str(k)) + len(str(v)) for k, v in anns.items())
    if size > TOTAL_ANNOTATION_SIZE_LIMIT:
        errs.append(
            FieldError(path, TOO_LONG, f"may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT} bytes")
        )
    return errs


def validate_label_selector(sel: Any, path: str) -> list[FieldError]:
    """``metav1validation.ValidateLabelSelector``."""
    errs: list[FieldError] = []
    if sel is None:
        return errs
    if not isinstance(sel, dict):
        return [invalid(path, sel, "must be an object")]
    errs.extend(validate_labels(sel.get("matchLabels"), f"{path}.matchLabels"))
    for i, expr in dicts(as_list(sel.get("matchExpressions"))):
        epath = f"{path}.matchExpressions[{i}]"
        op = expr.get("operator")
        values = as_list(expr.get("values"))
        if op in ("In", "NotIn"):
            if not values:
                errs.append(
                    required(
                        f"{epath}.values", "must be specified when `operator` is 'In' or 'NotIn'"
                    )
                )
        elif op in ("Exists", "DoesNotExist"):
            if values:
                errs.append(
                    forbidden(
                        f"{epath}.values",
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    )
                )
        else:
            errs.append(invalid(f"{epath}.operator", op, "not a valid selector operator"))
        key = str(expr.get("key", ""))
        errs.extend(invalid(f"{epath}.key", key, m) for m in is_qualified_name(key))
        for j, value in enumerate(values):
            errs.extend(
                invalid(f"{epath}.values[{j}]", value, m) for m in is_valid_label_value(str(value))
            )
    return errs


NameFn = Callable[[str], list[str]]


def _mask_trailing_dash(name: str) -> str:
    return name[:-1] + "a" if len(name) > 1 and name.endswith("-") else name


def validate_object_meta(
    obj: JSON, *, name_fn: NameFn, namespaced: bool | None, path: str = "metadata"
) -> list[FieldError]:
    """``ValidateObjectMeta``; ``namespaced=None`` when the scope is unknown (checked if set)."""
    errs: list[FieldError] = []
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return [required(path, "")]
    generate = meta.get("generateName") or ""
    if generate:
        errs.extend(
            invalid(f"{path}.generateName", generate, m)
            for m in name_fn(_mask_trailing_dash(str(generate)))
        )
    name = meta.get("name") or ""
    if not name:
        if not generate:
            errs.append(required(f"{path}.name", "name or generateName is required"))
    else:
        errs.extend(invalid(f"{path}.name", name, m) for m in name_fn(str(name)))
    namespace = meta.get("namespace") or ""
    if namespaced is True and not namespace:
        errs.append(required(f"{path}.namespace", ""))
    elif namespaced is False and namespace:
        errs.append(forbidden(f"{path}.namespace", "not allowed on this type"))
    elif namespace:
        errs.extend(
            invalid(f"{path}.namespace", namespace, m) for m in is_dns1123_label(str(namespace))
        )
    generation = int_value(meta.get("generation"))
    if generation is not None and generation < 0:
        errs.append(invalid(f"{path}.generation", generation, "must be greater than or equal to 0"))
    errs.extend(validate_labels(meta.get("labels"), f"{path}.labels"))
    errs.extend(validate_annotations(meta.get("annotations"), f"{path}.annotations"))
    for i, fin in enumerate(as_list(meta.get("finalizers"))):
        errs.extend(invalid(f"{path}.finalizers[{i}]", fin, m) for m in is_qualified_name(str(fin)))
    for i, ref in dicts(as_list(meta.get("ownerReferences"))):
        rpath = f"{path}.ownerReferences[{i}]"
        for key in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(key):
                errs.append(invalid(f"{rpath}.{key}", ref.get(key, ""), f"{key} must not be empty"))
    return errs


def validate_object_meta_update(new: JSON, old: JSON, path: str = "metadata") -> list[FieldError]:
    errs: list[FieldError] = []
    nm, om = as_dict(new.get("metadata")), as_dict(old.get("metadata"))
    for key in ("name", "namespace"):
        if (nm.get(key) or "") != (om.get(key) or ""):
            errs.append(invalid(f"{path}.{key}", nm.get(key) or "", "field is immutable"))
    if nm.get("uid") and om.get("uid") and nm["uid"] != om["uid"]:
        errs.append(invalid(f"{path}.uid", nm["uid"], "field is immutable"))
    if om.get("deletionTimestamp"):
        added = set(as_list(nm.get("finalizers"))) - set(as_list(om.get("finalizers")))
        for fin in sorted(added, key=str):
            errs.append(
                forbidden(
                    f"{path}.finalizers",
                    f"no new finalizers can be added if the object is being deleted, "
                    f"found new finalizers []string{{{json.dumps(fin)}}}",
                )
            )
    return errs
