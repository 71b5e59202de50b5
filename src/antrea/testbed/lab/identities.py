"""The lab's identities, bound the way ``deploy/antrea.yml`` binds them on a real cluster.

At every start of the embedded API server the lab applies the manifest's ServiceAccounts,
Roles, ClusterRoles and their bindings (read from the file, so the lab always runs with the
manifest's permissions) and issues, per node, two ServiceAccount tokens like the bound tokens a
kubelet mounts into pods (TokenReview reports the pod's node in ``extra``):

- ``antrea-agent`` (``system:serviceaccount:kube-system:antrea-agent``) in
  ``nodes/<node>/kubeconfig``: the agent's identity;
- ``antrea-controller`` in ``nodes/<node>/controller.kubeconfig``: the identity the controller
  candidate of the node's ``antrea daemon`` uses (``controllerKubeconfig``), so the controller
  never runs with the agent's permissions or the agent with the controller's.

The tokens live in ``<lab>/serviceaccount-tokens.json`` (mode 0600) and survive a supervisor
restart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from antrea.errors import AntreaError
from antrea.testbed.lab.state import LabSpec

JSON = dict[str, Any]
NAMESPACE = "kube-system"
AGENT_SA = "antrea-agent"
CONTROLLER_SA = "antrea-controller"
NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"
MANIFEST = Path(__file__).resolve().parents[4] / "deploy" / "antrea.yml"

_KINDS = {
    ("v1", "ServiceAccount"): ("", "serviceaccounts"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("rbac.authorization.k8s.io", "clusterroles"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): (
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
    ),
    ("rbac.authorization.k8s.io/v1", "Role"): ("rbac.authorization.k8s.io", "roles"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("rbac.authorization.k8s.io", "rolebindings"),
}
_CRD = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")
CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")


class ManifestError(AntreaError, RuntimeError):
    pass


def identity_objects(docs: Iterable[Any]) -> list[tuple[tuple[str, str], JSON]]:
    """The ServiceAccounts and RBAC objects of a manifest, as (storage key, object)."""
    out: list[tuple[tuple[str, str], JSON]] = []
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        key = _KINDS.get((str(doc.get("apiVersion")), str(doc.get("kind"))))
        if key is not None:
            out.append((key, doc))
    return out


def manifest_identity_objects(path: Path = MANIFEST) -> list[tuple[tuple[str, str], JSON]]:
    try:
        docs = list(yaml.safe_load_all(path.read_text()))
    except (OSError, yaml.YAMLError) as exc:
        raise ManifestError(f"cannot read the RBAC of {path}: {exc}") from exc
    objects = identity_objects(docs)
    if not any(k[1] == "clusterrolebindings" for k, _ in objects):
        raise ManifestError(f"{path} binds no ClusterRole")
    return objects


def manifest_crd_objects(path: Path = MANIFEST) -> list[tuple[tuple[str, str], JSON]]:
    """The manifest's CustomResourceDefinitions (the Antrea-native policy API)."""
    try:
        docs = list(yaml.safe_load_all(path.read_text()))
    except (OSError, yaml.YAMLError) as exc:
        raise ManifestError(f"cannot read the CRDs of {path}: {exc}") from exc
    return [
        (CRD_KEY, d)
        for d in docs
        if isinstance(d, dict) and (str(d.get("apiVersion")), str(d.get("kind"))) == _CRD
    ]


_ADMISSION = {
    ("v1", "Service"): ("", "services"),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"): (
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
    ),
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"): (
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
    ),
}


def manifest_admission_objects(path: Path = MANIFEST) -> list[tuple[tuple[str, str], JSON]]:
    """The manifest's Service ``antrea`` and admission webhook configurations (the API server
    calls the controller's webhooks through them)."""
    try:
        docs = list(yaml.safe_load_all(path.read_text()))
    except (OSError, yaml.YAMLError) as exc:
        raise ManifestError(f"cannot read the webhooks of {path}: {exc}") from exc
    out: list[tuple[tuple[str, str], JSON]] = []
    for d in docs:
        if not isinstance(d, dict):
            continue
        key = _ADMISSION.get((str(d.get("apiVersion")), str(d.get("kind"))))
        if key is not None:
            out.append((key, d))
    return out


def serviceaccount_user(name: str, namespace: str = NAMESPACE) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def serviceaccount_groups(namespace: str = NAMESPACE) -> list[str]:
    return ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"]


def tokens_file(spec: LabSpec) -> Path:
    return spec.path / "serviceaccount-tokens.json"


def serviceaccount_tokens(spec: LabSpec) -> dict[str, dict[str, str]]:
    """node -> {serviceaccount -> token}, created once per lab."""
    from antrea.testbed.apiserver.auth import new_token

    path = tokens_file(spec)
    if path.exists():
        loaded: dict[str, dict[str, str]] = json.loads(path.read_text())
    else:
        loaded = {}
    changed = False
    for node in spec.nodes:
        per_node = loaded.setdefault(node.name, {})
        for sa in (AGENT_SA, CONTROLLER_SA):
            if sa not in per_node:
                per_node[sa] = new_token()
                changed = True
    if changed:
        path.touch(mode=0o600)
        path.write_text(json.dumps(loaded, indent=1, sort_keys=True))
        path.chmod(0o600)
    return loaded
