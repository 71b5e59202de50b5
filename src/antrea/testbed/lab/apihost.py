"""The lab's API endpoint: the embedded API server, or a forwarder to an existing one.

Embedded (default): the supervisor runs ``antrea.testbed.apiserver`` in-process and serves it twice,
on 127.0.0.1:<free port> for the host (kubectl, `antrea lab probe`) and on
<underlay .1>:6443 inside the underlay namespace for the nodes. The second listening socket is
created inside the underlay namespace (see `antrea.testbed.lab.netns`) and handed to the server.
Identities: an admin token (``system:masters``) for the host and one ``system:node:<node>``
token per node in a kube-apiserver style ``--token-auth-file``; the agents and controllers run
as the manifest's ServiceAccounts (`antrea.testbed.lab.identities`).

External (``--kubeconfig``): nodes cannot reach the host's loopback or routes, so the supervisor
listens on <underlay .1>:6443 and forwards raw TCP (TLS stays end to end) to the real server;
node kubeconfigs keep the given credentials, point at the forwarder and pin
``tls-server-name`` to the real server's name.
"""

from __future__ import annotations

import asyncio
import base64
import random
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import structlog
import yaml

from antrea.k8s.client import kubeconfig_sections
from antrea.testbed.apiserver.podstreams import PodRuntime
from antrea.testbed.apiserver.proxy import Dialer
from antrea.testbed.lab import identities, netns
from antrea.testbed.lab.state import UNDERLAY_API_PORT, LabSpec

log = structlog.get_logger(__name__)

Stop = Callable[[], Awaitable[None]]


def write_tokens(spec: LabSpec) -> dict[str, str]:
    """Create (or reuse, after a supervisor restart) the lab's token file; user -> token."""
    from antrea.testbed.apiserver.auth import (
        Identity,
        format_token_line,
        new_token,
        parse_token_csv,
    )

    if spec.token_file.exists():
        return {
            ident.user: tok for tok, ident in parse_token_csv(spec.token_file.read_text()).items()
        }
    users = {"admin": Identity(user="admin", uid="admin", groups=("system:masters",))}
    for node in spec.nodes:
        user = f"system:node:{node.name}"
        users[user] = Identity(user=user, uid=user, groups=("system:nodes",))
    tokens = {user: new_token() for user in users}
    text = "".join(format_token_line(tokens[u], ident) for u, ident in users.items())
    spec.token_file.write_text(text)
    spec.token_file.chmod(0o600)
    return tokens


def netns_dialer(name: str) -> Dialer:
    """A `webhooks.Dialer` (and `proxy.Dialer`: ``ctx`` None is plain TCP) whose TCP
    connections leave from network namespace ``name``."""

    async def dial(
        host: str, port: int, ctx: ssl.SSLContext | None, server_hostname: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        def make() -> socket.socket:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            return s

        sock = await asyncio.to_thread(netns.call_in, netns.netns_path(name), make)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (host, port))
            return await asyncio.open_connection(
                sock=sock, ssl=ctx, server_hostname=server_hostname if ctx else None
            )
        except BaseException:
            sock.close()
            raise

    return dial


PORT_RANGE = (20000, 32000)  # below Linux's ephemeral range (32768-60999)


def pick_port() -> int:
    """A free port outside the ephemeral range.

    A port from the ephemeral range (what binding port 0 gives) can be taken as the local
    port of any outgoing connection while the supervisor restarts; one below it cannot.
    """
    for _ in range(200):
        port = random.randrange(*PORT_RANGE)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return 0


async def start_embedded(spec: LabSpec, pod_runtime: PodRuntime | None = None) -> Stop:
    """Run the embedded API server for the lab; write the host and node kubeconfigs.
    ``pod_runtime`` answers ``pods/log`` and ``pods/exec`` (the lab's kubelets)."""
    from antrea.testbed.apiserver.kubeconfig import render_kubeconfig, write_kubeconfig
    from antrea.testbed.apiserver.server import APIServer

    tokens = write_tokens(spec)
    spec.apiserver_dir.mkdir(parents=True, exist_ok=True)
    server = APIServer(
        port=spec.api_port or pick_port(),  # after a restart: the same port
        bind_address="127.0.0.1",
        data_dir=spec.apiserver_dir / "data",
        cert_dir=spec.apiserver_dir / "pki",
        token_auth_file=spec.token_file,
        extra_sans=(spec.underlay_api_ip,),
        # Pods reach the server through the `default/kubernetes` Service -> the underlay.
        advertise_address=(spec.underlay_api_ip, UNDERLAY_API_PORT),
        # Admission webhooks (the controller's, behind Service antrea) listen on node
        # addresses: connect to them from the underlay, like a control plane there would.
        webhook_dial=netns_dialer(spec.underlay_netns),
        # pods/proxy and services/proxy (antctl --via-apiserver): node addresses, the same way.
        proxy_dial=netns_dialer(spec.underlay_netns),
    )
    server.pod_runtime = pod_runtime
    await server.start()
    # The manifest's ServiceAccounts and RBAC, and a token per node for each ServiceAccount.
    server.ensure_objects(identities.manifest_identity_objects())
    # The manifest's CRDs (Antrea-native policies), as `kubectl apply` would install them.
    server.ensure_objects(identities.manifest_crd_objects())
    # Service antrea and the admission webhook configurations: created once, never reset (the
    # leading controller keeps their caBundle; the Service keeps its ClusterIP).
    server.ensure_objects(
        [
            (key, obj)
            for key, obj in identities.manifest_admission_objects()
            if server.store.get(key, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
            is None
        ]
    )
    sa_tokens = identities.serviceaccount_tokens(spec)
    for node in spec.nodes:
        for sa, token in sa_tokens[node.name].items():
            server.add_token(
                token,
                user=identities.serviceaccount_user(sa),
                uid=f"{sa}@{node.name}",
                groups=identities.serviceaccount_groups(),
                extra={identities.NODE_NAME_EXTRA: [node.name]},
            )
    spec.api_port = server.port
    under_sock = await asyncio.to_thread(
        netns.listen_socket, spec.underlay_api_ip, UNDERLAY_API_PORT, in_netns=spec.underlay_netns
    )
    await server.add_socket(under_sock)
    ca = server.ca_pem
    write_kubeconfig(
        spec.kubeconfig,
        render_kubeconfig(
            server=f"https://127.0.0.1:{spec.api_port}", ca_pem=ca, token=tokens["admin"]
        ),
    )
    write_kubeconfig(
        spec.path / "admin-underlay.kubeconfig",
        render_kubeconfig(
            server=f"https://{spec.underlay_api_ip}:{UNDERLAY_API_PORT}",
            ca_pem=ca,
            token=tokens["admin"],
        ),
    )
    for node in spec.nodes:
        user = f"system:node:{node.name}"
        text = render_kubeconfig(
            server=f"https://127.0.0.1:{spec.api_port}", ca_pem=ca, token=tokens[user], user=user
        )
        write_kubeconfig(node.kubelet_kubeconfig, text)
        for sa, path in (
            (identities.AGENT_SA, node.kubeconfig),
            (identities.CONTROLLER_SA, node.controller_kubeconfig),
        ):
            text = render_kubeconfig(
                server=f"https://{spec.underlay_api_ip}:{UNDERLAY_API_PORT}",
                ca_pem=ca,
                token=sa_tokens[node.name][sa],
                user=sa,
            )
            write_kubeconfig(path, text)
    log.info(
        "lab_apiserver_started",
        port=spec.api_port,
        underlay=f"{spec.underlay_api_ip}:{UNDERLAY_API_PORT}",
    )

    async def stop() -> None:
        await server.stop()

    return stop


def node_kubeconfig_for_external(kubeconfig: Path, forwarder: str) -> tuple[str, tuple[str, int]]:
    """Node kubeconfig text pointing at the forwarder, and the real server's (host, port)."""
    doc: dict[str, Any] = yaml.safe_load(kubeconfig.read_text())
    _, cluster, _ = kubeconfig_sections(doc, kubeconfig)
    url = urlsplit(cluster["server"])
    host = url.hostname or "127.0.0.1"
    port = url.port or (443 if url.scheme == "https" else 80)
    cluster["server"] = f"{url.scheme}://{forwarder}"
    cluster.setdefault("tls-server-name", host)
    # Inline file references: the node kubeconfig lives elsewhere than the original.
    base = kubeconfig.parent
    for section, keys in (
        ([c["cluster"] for c in doc["clusters"]], ("certificate-authority",)),
        (
            [u.get("user") or {} for u in doc.get("users") or []],
            ("client-certificate", "client-key"),
        ),
    ):
        for entry in section:
            for key in keys:
                if entry.get(key):
                    data = (base / entry.pop(key)).read_bytes()
                    entry[f"{key}-data"] = base64.b64encode(data).decode()
    return yaml.safe_dump(doc, sort_keys=False), (host, port)


async def start_forwarder(spec: LabSpec) -> Stop:
    """External API server: TCP forwarder from the underlay to it, node kubeconfigs."""
    from antrea.testbed.apiserver.kubeconfig import write_kubeconfig
    from antrea.testbed.lab.splice import splice

    forwarder = f"{spec.underlay_api_ip}:{UNDERLAY_API_PORT}"
    text, (host, port) = node_kubeconfig_for_external(spec.kubeconfig, forwarder)
    write_kubeconfig(spec.path / "admin-underlay.kubeconfig", text)
    for node in spec.nodes:
        write_kubeconfig(node.kubeconfig, text)
        write_kubeconfig(node.controller_kubeconfig, text)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            log.warning("forwarder_connect_failed", target=f"{host}:{port}", error=str(exc))
            writer.close()
            return
        await splice(reader, writer, up_reader, up_writer)

    sock = await asyncio.to_thread(
        netns.listen_socket, spec.underlay_api_ip, UNDERLAY_API_PORT, in_netns=spec.underlay_netns
    )
    server = await asyncio.start_server(handle, sock=sock)
    log.info("lab_forwarder_started", listen=forwarder, target=f"{host}:{port}")

    async def stop() -> None:
        server.close()

    return stop
