"""kubernetes-asyncio clients from a kubeconfig file or the in-cluster service account.

`load_kubeconfig_client` is synchronous on purpose: roles build their clients while wiring
themselves up, before any await. It reads the kubeconfig itself rather than through
``kubernetes_asyncio.config.load_kube_config`` (a coroutine) and supports what our deployments
use: a server URL, a bearer token (inline or ``tokenFile``), CA data or file, client
certificate data or files, ``tls-server-name``, ``insecure-skip-tls-verify`` and ``exec``
credential plugins (what EKS, GKE and AKS kubeconfigs use; `exec_credential`). Auth-provider
users (removed from kubectl) are not supported. `read_kubeconfig` is that
reader on its own, for clients that do not use kubernetes-asyncio (the lab's aiohttp client,
which takes its TLS settings from `KubeconfigContext.ssl_context`).

No certificate or key is written anywhere: kubernetes-asyncio builds its TLS context from file
paths only, so a kubeconfig client gets a context made in memory instead (`_use_tls`: the CA with
``cadata=``, a client certificate through `load_cert_chain_pem`, whose private temporary files
are gone before it returns). ``ApiClient`` opens an aiohttp session, so these functions must be
called with an event loop running (inside a coroutine).
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from antrea.k8s.errors import KubeconfigError

__all__ = [
    "KubeconfigContext",
    "KubeconfigError",
    "Material",
    "bearer_token",
    "configuration_from_kubeconfig",
    "exec_credential",
    "incluster_configuration",
    "kubeconfig_sections",
    "load_kubeconfig_client",
    "read_kubeconfig",
    "tls_context",
]


def _named(entries: Any, name: str, what: str) -> dict[str, Any]:
    for entry in entries or ():
        if isinstance(entry, dict) and entry.get("name") == name:
            value = entry.get(what)
            return value if isinstance(value, dict) else {}
    raise KubeconfigError(f"{what} {name!r} not found in kubeconfig")


@dataclass(frozen=True, slots=True)
class Material:
    """A certificate or key given inline (``*-data``) or as a file (resolved path)."""

    data: bytes | None = None
    path: str | None = None

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return Path(self.path).read_bytes()


@dataclass(frozen=True, slots=True)
class KubeconfigContext:
    """What one kubeconfig context says about reaching and authenticating to its server."""

    server: str
    ca: Material | None = None
    client_cert: Material | None = None
    client_key: Material | None = None
    token: str | None = None
    insecure_skip_tls_verify: bool = False
    tls_server_name: str | None = None

    def ssl_context(self) -> ssl.SSLContext | bool:
        """TLS settings for an aiohttp client of this server (False for plain http)."""
        if not self.server.startswith("https"):
            return False
        if self.insecure_skip_tls_verify:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ca = self.ca.read() if self.ca is not None else None
            ctx = ssl.create_default_context(cadata=ca.decode() if ca else None)
        if self.client_cert is not None and self.client_key is not None:
            from antrea.util.pki import load_cert_chain_pem  # cryptography: only if needed

            load_cert_chain_pem(ctx, self.client_cert.read(), self.client_key.read())
        return ctx


def _resolve(base: Path, path: str) -> str:
    p = Path(path)
    return str(p if p.is_absolute() else base / p)


def _material(section: dict[str, Any], key: str, base: Path) -> Material | None:
    if section.get(f"{key}-data"):
        return Material(data=base64.b64decode(section[f"{key}-data"]))
    if section.get(key):
        return Material(path=_resolve(base, section[key]))
    return None


def kubeconfig_sections(
    raw: dict[str, Any], path: str | Path, *, context: str | None = None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The context, cluster and user mappings of a parsed kubeconfig's (current) context.

    They are the document's own dicts (a caller may rewrite them); the user is ``{}`` when the
    context names none. ``path`` is for messages.
    """
    ctx_name = context or raw.get("current-context")
    if not ctx_name:
        contexts = raw.get("contexts") or []
        if len(contexts) != 1:
            raise KubeconfigError(f"{path}: no current-context")
        ctx_name = contexts[0].get("name")
    ctx = _named(raw.get("contexts"), str(ctx_name), "context")
    cluster = _named(raw.get("clusters"), str(ctx.get("cluster")), "cluster")
    user = _named(raw.get("users"), str(ctx.get("user")), "user") if ctx.get("user") else {}
    return ctx, cluster, user


def read_kubeconfig(path: str | Path, *, context: str | None = None) -> KubeconfigContext:
    """The server, TLS material and credentials of ``path``'s (current) context."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise KubeconfigError(f"cannot read kubeconfig {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise KubeconfigError(f"{path}: not a kubeconfig")
    base = path.resolve().parent
    _, cluster, user = kubeconfig_sections(raw, path, context=context)
    if "auth-provider" in user:
        raise KubeconfigError(f"{path}: auth-provider users are not supported (use exec)")
    server = cluster.get("server")
    if not server:
        raise KubeconfigError(f"{path}: cluster has no server")
    if "exec" in user:
        if not isinstance(user["exec"], dict):
            raise KubeconfigError(f"{path}: exec must be a mapping")
        user = {**user, **exec_credential(user["exec"], base, str(server), cluster)}
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = Path(_resolve(base, user["tokenFile"])).read_text().strip()
    return KubeconfigContext(
        server=str(server).rstrip("/"),
        ca=_material(cluster, "certificate-authority", base),
        client_cert=_material(user, "client-certificate", base),
        client_key=_material(user, "client-key", base),
        token=str(token) if token else None,
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify")),
        tls_server_name=cluster.get("tls-server-name") or None,
    )


EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")


def exec_credential(
    spec: dict[str, Any], base: Path, server: str, cluster: dict[str, Any]
) -> dict[str, Any]:
    """Run a kubeconfig ``exec`` credential plugin as kubectl does; the user fields it yields
    (``token``, or ``client-certificate-data``/``client-key-data``).

    The plugin gets ``KUBERNETES_EXEC_INFO`` (an ExecCredential with the cluster when
    ``provideClusterInfo``), the configured ``env`` and ``args``, and must print an
    ExecCredential of the same ``apiVersion``. The credential is fetched once per load (antctl
    and the lab are short-lived; no refresh on expiry).
    """
    import json
    import subprocess

    api_version = str(spec.get("apiVersion") or "")
    if api_version not in EXEC_API_VERSIONS:
        raise KubeconfigError(f"exec plugin apiVersion {api_version!r} is not supported")
    command = str(spec.get("command") or "")
    if not command:
        raise KubeconfigError("exec plugin has no command")
    if "/" in command and not Path(command).is_absolute():
        command = _resolve(base, command)
    info: dict[str, Any] = {
        "apiVersion": api_version,
        "kind": "ExecCredential",
        "spec": {"interactive": False},
    }
    if spec.get("provideClusterInfo"):
        info["spec"]["cluster"] = {
            "server": server,
            "certificate-authority-data": cluster.get("certificate-authority-data"),
            "insecure-skip-tls-verify": bool(cluster.get("insecure-skip-tls-verify")),
        }
    env = dict(os.environ, KUBERNETES_EXEC_INFO=json.dumps(info))
    env.update({str(e["name"]): str(e["value"]) for e in spec.get("env") or ()})
    try:
        proc = subprocess.run(
            [command, *map(str, spec.get("args") or ())],
            env=env, capture_output=True, timeout=60, check=False,
        )  # fmt: skip
    except OSError as exc:
        hint = spec.get("installHint") or ""
        raise KubeconfigError(f"exec plugin {command}: {exc}. {hint}".strip()) from exc
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise KubeconfigError(f"exec plugin {command} failed (exit {proc.returncode}): {err}")
    try:
        cred = json.loads(proc.stdout)
        status = cred["status"]
    except (ValueError, KeyError, TypeError) as exc:
        raise KubeconfigError(f"exec plugin {command}: not an ExecCredential: {exc}") from exc
    if cred.get("apiVersion") != api_version:
        raise KubeconfigError(f"exec plugin {command} answered apiVersion {cred.get('apiVersion')}")
    out: dict[str, Any] = {}
    if status.get("token"):
        out["token"] = str(status["token"])
    if status.get("clientCertificateData") and status.get("clientKeyData"):
        out["client-certificate-data"] = base64.b64encode(
            str(status["clientCertificateData"]).encode()
        ).decode()
        out["client-key-data"] = base64.b64encode(str(status["clientKeyData"]).encode()).decode()
    if not out:
        raise KubeconfigError(f"exec plugin {command} returned no token or client certificate")
    return out


def configuration_from_kubeconfig(path: str | Path, *, context: str | None = None) -> Any:
    """A ``kubernetes_asyncio.client.Configuration`` for ``path``'s (current) context.

    Certificate and key files the kubeconfig names are set as paths; inline ``*-data`` is not
    written anywhere (`load_kubeconfig_client` gives its client a TLS context made in memory).
    """
    return _configuration(read_kubeconfig(path, context=context))


def _configuration(kc: KubeconfigContext) -> Any:
    from kubernetes_asyncio.client import Configuration

    conf = Configuration()
    conf.host = kc.server
    if kc.ca is not None and kc.ca.path is not None:
        conf.ssl_ca_cert = kc.ca.path
    if kc.insecure_skip_tls_verify:
        conf.verify_ssl = False
    if kc.tls_server_name:
        conf.tls_server_name = kc.tls_server_name
    if kc.token:
        conf.api_key = {"BearerToken": f"Bearer {kc.token}"}
    if kc.client_cert is not None and kc.client_cert.path is not None:
        conf.cert_file = kc.client_cert.path
    if kc.client_key is not None and kc.client_key.path is not None:
        conf.key_file = kc.client_key.path
    return conf


_CLOSING: set[asyncio.Task[None]] = set()  # referenced until done


def _use_tls(api_client: Any, ctx: ssl.SSLContext) -> None:
    """Make ``api_client`` connect with ``ctx``: a new aiohttp session in place of the one
    kubernetes-asyncio opened (unused, closed at once) with a context from file paths."""
    import aiohttp

    rest = api_client.rest_client
    unused = rest.pool_manager
    rest.pool_manager = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=unused.connector.limit, ssl=ctx),
        trust_env=True,
        read_bufsize=2**21,  # as kubernetes-asyncio: watch events of large objects
    )
    closing = asyncio.get_running_loop().create_task(unused.close())  # never used: no connection
    _CLOSING.add(closing)
    closing.add_done_callback(_CLOSING.discard)
    rest.antrea_tls_context = ctx


def tls_context(api_client: Any) -> ssl.SSLContext | None:
    """The TLS context a `load_kubeconfig_client` client connects with (None: the client
    was made otherwise, e.g. in-cluster; its Configuration's paths then say it all)."""
    ctx = getattr(api_client.rest_client, "antrea_tls_context", None)
    return ctx if isinstance(ctx, ssl.SSLContext) else None


def incluster_configuration() -> Any:
    """The service account configuration (token refreshed by kubernetes-asyncio)."""
    from kubernetes_asyncio.client import Configuration
    from kubernetes_asyncio.config import ConfigException, load_incluster_config

    conf = Configuration()
    try:
        load_incluster_config(client_configuration=conf)  # type: ignore[no-untyped-call]
    except ConfigException as exc:
        raise KubeconfigError(f"no kubeconfig given and not running in a pod: {exc}") from exc
    return conf


def load_kubeconfig_client(
    kubeconfig: str | None, *, context: str | None = None, server: str | None = None
) -> Any:
    """A ``kubernetes_asyncio.client.ApiClient`` for ``kubeconfig``, or in-cluster when None.

    ``server`` (Antrea's ``kubeAPIServerOverride``) replaces the API server URL, keeping the
    credentials and CA: in a pod on a cluster without kube-proxy the ``kubernetes`` Service
    address is not reachable, so the agent and controller talk to the API server directly.
    Call it from a coroutine (the client's aiohttp session binds to the running loop), and
    ``await client.close()`` when done.
    """
    from kubernetes_asyncio.client import ApiClient

    kc = read_kubeconfig(kubeconfig, context=context) if kubeconfig else None
    if kc is not None:
        conf = _configuration(kc)
    else:
        if server and not os.environ.get("KUBERNETES_SERVICE_HOST"):
            # load_incluster_config insists on the Service variables even when overridden.
            os.environ["KUBERNETES_SERVICE_HOST"] = "kubernetes.default.svc"
            os.environ.setdefault("KUBERNETES_SERVICE_PORT", "443")
        conf = incluster_configuration()
    if server:
        conf.host = server.rstrip("/")
    api = ApiClient(configuration=conf)
    ctx = kc.ssl_context() if kc is not None else False
    if isinstance(ctx, ssl.SSLContext) and conf.host.startswith("https"):
        _use_tls(api, ctx)
    return api


def bearer_token(api_client: Any) -> str | None:
    """The bearer token ``api_client`` sends, if any (for TokenReview-based peers)."""
    keys = getattr(api_client.configuration, "api_key", None) or {}
    value = keys.get("BearerToken") or keys.get("authorization")
    if not value:
        return None
    text = str(value)
    return text[7:] if text.lower().startswith("bearer ") else text
