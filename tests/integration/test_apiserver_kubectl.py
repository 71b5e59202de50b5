"""kubectl (the pinned v1.32) against `antrea apiserver`, unmodified: every verb users rely on."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.kubectl

REPO = Path(__file__).resolve().parents[2]
KUBECTL = REPO / ".venv" / "bin" / "kubectl"
ANTREA = [sys.executable, "-m", "antrea.cmd.antrea"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    def __init__(self, data_dir: Path, work: Path) -> None:
        self.data_dir = data_dir
        self.kubeconfig = work / "kubeconfig"
        self.cache = work / "cache"
        self.log = work / "apiserver.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.kubeconfig.unlink(missing_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    *ANTREA,
                    "apiserver",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                    "--kubeconfig-out",
                    str(self.kubeconfig),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"apiserver exited: {self.log.read_text()}")
            if (
                self.kubeconfig.exists()
                and self.kubectl("get", "--raw", "/healthz", check=False).returncode == 0
            ):
                return
            time.sleep(0.1)
        raise RuntimeError("apiserver did not become ready")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "HOME": str(self.cache)}

    def kubectl(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [str(KUBECTL), "--cache-dir", str(self.cache), *args],
            input=stdin,
            check=False,
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=60,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {res.stderr}")
        return res


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not KUBECTL.exists():
        pytest.skip("kubectl not installed in .venv/bin")
    work = tmp_path_factory.mktemp("kubectl")
    srv = Server(work / "data", work)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


NETPOL = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web
  namespace: {ns}
spec:
  podSelector:
    matchLabels: {{app: web}}
  ingress:
  - from:
    - podSelector: {{}}
    ports:
    - port: {port}
      protocol: TCP
"""

POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {ns}
  labels: {{app: web}}
spec:
  nodeName: node1
  containers:
  - name: c
    image: busybox
"""


def test_api_resources_and_version(server: Server) -> None:
    out = server.kubectl("api-resources").stdout
    for name in ("pods", "networkpolicies", "leases", "customresourcedefinitions", "endpoints"):
        assert name in out
    assert "Server Version: v1.32" in server.kubectl("version").stdout


def test_auth_whoami_and_can_i(server: Server) -> None:
    out = server.kubectl("auth", "whoami").stdout
    assert "admin" in out and "system:masters" in out
    assert server.kubectl("auth", "can-i", "create", "pods").stdout.strip() == "yes"


def test_create_namespace_and_typed_creates(server: Server) -> None:
    server.kubectl("create", "namespace", "typed")
    server.kubectl("create", "configmap", "cm", "-n", "typed", "--from-literal=a=b")
    server.kubectl("create", "secret", "generic", "s", "-n", "typed", "--from-literal=x=y")
    server.kubectl("create", "serviceaccount", "sa", "-n", "typed")
    cm = json.loads(server.kubectl("get", "cm", "cm", "-n", "typed", "-o", "json").stdout)
    assert cm["data"] == {"a": "b"}
    out = server.kubectl("get", "ns").stdout
    assert "typed" in out and "Active" in out


def test_apply_then_reapply_with_change(server: Server, tmp_path: Path) -> None:
    server.kubectl("create", "namespace", "apply")
    manifest = tmp_path / "np.yaml"
    manifest.write_text(NETPOL.format(ns="apply", port=80))
    assert "created" in server.kubectl("apply", "-f", str(manifest)).stdout
    manifest.write_text(NETPOL.format(ns="apply", port=8080))
    assert "configured" in server.kubectl("apply", "-f", str(manifest)).stdout
    # Nothing changed (the manifest spells out the defaulted protocol): an empty patch.
    assert "unchanged" in server.kubectl("apply", "-f", str(manifest)).stdout
    obj = json.loads(server.kubectl("get", "netpol", "web", "-n", "apply", "-o", "json").stdout)
    assert obj["spec"]["ingress"][0]["ports"][0] == {"port": 8080, "protocol": "TCP"}
    assert obj["metadata"]["generation"] == 2
    yaml_out = server.kubectl("get", "netpol", "web", "-n", "apply", "-o", "yaml").stdout
    assert "port: 8080" in yaml_out
    table = server.kubectl("get", "netpol", "-n", "apply").stdout
    assert table.split("\n")[0].split() == ["NAME", "POD-SELECTOR", "AGE"]
    assert "app=web" in table


def test_get_wide_label_annotate_delete(server: Server) -> None:
    server.kubectl("create", "namespace", "pods")
    server.kubectl("apply", "-f", "-", stdin=POD.format(name="p1", ns="pods"))
    wide = server.kubectl("get", "pods", "-n", "pods", "-o", "wide").stdout
    header = wide.split("\n")[0].split()
    assert header[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"] and "NODE" in header
    assert "node1" in wide and "Pending" in wide
    server.kubectl("label", "pod", "p1", "-n", "pods", "tier=front")
    server.kubectl("annotate", "pod", "p1", "-n", "pods", "note=hello")
    obj = json.loads(server.kubectl("get", "pod", "p1", "-n", "pods", "-o", "json").stdout)
    assert obj["metadata"]["labels"]["tier"] == "front"
    assert obj["metadata"]["annotations"]["note"] == "hello"
    out = server.kubectl("get", "pods", "-n", "pods", "-l", "tier in (front,back)").stdout
    assert "p1" in out
    # A bound pod is deleted gracefully; --grace-period=0 --force removes it at once.
    server.kubectl("delete", "pod", "p1", "-n", "pods", "--grace-period=0", "--force")
    res = server.kubectl("get", "pod", "p1", "-n", "pods", check=False)
    assert res.returncode != 0 and "NotFound" in res.stderr
    server.kubectl("delete", "namespace", "pods")
    assert server.kubectl("get", "ns", "pods", check=False).returncode != 0


def test_get_watch_sees_new_objects(server: Server) -> None:
    server.kubectl("create", "namespace", "watched")
    proc = subprocess.Popen(
        [
            str(KUBECTL),
            "--cache-dir",
            str(server.cache),
            "get",
            "configmaps",
            "-n",
            "watched",
            "-w",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=server.env(),
    )
    try:
        time.sleep(1.0)
        server.kubectl("create", "configmap", "seen", "-n", "watched")
        assert proc.stdout is not None
        deadline = time.monotonic() + 20
        found = False
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if "seen" in line:
                found = True
                break
            if not line and proc.poll() is not None:
                break
        assert found, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.kill()
        proc.wait()


def test_invalid_networkpolicy_is_rejected_with_field_path(server: Server, tmp_path: Path) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(NETPOL.format(ns="default", port=70000))
    res = server.kubectl("apply", "-f", str(manifest), check=False)
    assert res.returncode != 0
    assert "spec.ingress[0].ports[0].port" in res.stderr
    assert server.kubectl("get", "netpol", "web", "-n", "default", check=False).returncode != 0


def test_custom_resource_definitions(server: Server, tmp_path: Path) -> None:
    crd = tmp_path / "crd.yaml"
    crd.write_text("""\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.example.com}
spec:
  group: example.com
  scope: Cluster
  names: {plural: gadgets, singular: gadget, kind: Gadget, listKind: GadgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
    additionalPrinterColumns:
    - {name: Color, type: string, jsonPath: .spec.color}
""")
    server.kubectl("apply", "-f", str(crd))
    cr = tmp_path / "cr.yaml"
    cr.write_text(
        "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g1}\nspec: {color: red}\n"
    )
    server.kubectl("apply", "-f", str(cr))
    cr.write_text(
        "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g1}\nspec: {color: blue}\n"
    )
    assert "configured" in server.kubectl("apply", "-f", str(cr)).stdout
    out = server.kubectl("get", "gadgets").stdout
    assert out.split("\n")[0].split() == ["NAME", "COLOR", "AGE"] and "blue" in out
    server.kubectl("delete", "crd", "gadgets.example.com")


def test_state_survives_restart(tmp_path: Path) -> None:
    if not KUBECTL.exists():
        pytest.skip("kubectl not installed in .venv/bin")
    srv = Server(tmp_path / "data", tmp_path)
    try:
        srv.start()
        srv.kubectl("create", "namespace", "durable")
        srv.stop()
        srv.start()
        assert "durable" in srv.kubectl("get", "ns").stdout
    finally:
        srv.stop()


def test_deploy_manifest_applies_idempotently(server: Server) -> None:
    """deploy/antrea.yml (RBAC, apps, services) applies; re-applying changes nothing."""
    manifest = REPO / "deploy" / "antrea.yml"
    if not manifest.exists():
        pytest.skip("no deploy manifest")
    first = server.kubectl("apply", "-f", str(manifest)).stdout
    assert "created" in first
    second = server.kubectl("apply", "-f", str(manifest)).stdout.strip().splitlines()
    assert second and all(line.endswith("unchanged") for line in second), second


def test_server_side_apply(server: Server, tmp_path: Path) -> None:
    """`kubectl apply --server-side` creates, then merges changes (no managedFields)."""
    server.kubectl("create", "namespace", "ssa")
    manifest = tmp_path / "cm.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: ssa}\ndata: {k: v1}\n"
    )
    assert (
        "serverside-applied" in server.kubectl("apply", "--server-side", "-f", str(manifest)).stdout
    )
    manifest.write_text(manifest.read_text().replace("v1}", "v2}"))
    server.kubectl("apply", "--server-side", "-f", str(manifest))
    cm = json.loads(server.kubectl("get", "cm", "c", "-n", "ssa", "-o", "json").stdout)
    assert cm["data"] == {"k": "v2"}


LIST = """\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {{name: {ns}}}
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {{name: np1, namespace: {ns}}}
  spec:
    podSelector: {{}}
    {extra}ingress:
    - from: [{{podSelector: {{matchLabels: {{a: b}}}}}}]
      ports: [{{port: 80, protocol: TCP}}]
"""


def test_apply_list_validated_against_openapi_v2(server: Server, tmp_path: Path) -> None:
    """A `kind: List` is validated client-side against /openapi/v2 (protobuf), then applied
    item by item; an unknown field inside an item is caught by that validation."""
    manifest = tmp_path / "list.yaml"
    manifest.write_text(LIST.format(ns="listns", extra=""))
    out = server.kubectl("apply", "-f", str(manifest)).stdout
    assert "namespace/listns created" in out and "np1 created" in out
    assert "np1 unchanged" in server.kubectl("apply", "-f", str(manifest)).stdout
    manifest.write_text(LIST.format(ns="listns", extra="bogus: 1\n    "))
    bad = server.kubectl("apply", "-f", str(manifest), check=False)
    assert bad.returncode != 0
    assert 'unknown field "bogus"' in bad.stderr and "NetworkPolicySpec" in bad.stderr
    manifest.write_text(LIST.format(ns="listns", extra=""))
    out = server.kubectl("apply", "--server-side", "-f", str(manifest)).stdout
    assert "np1 serverside-applied" in out


def test_explain_builtin_and_custom(server: Server, tmp_path: Path) -> None:
    out = server.kubectl("explain", "networkpolicy.spec.ingress").stdout
    assert (
        "KIND:       NetworkPolicy" in out and "FIELD: ingress <[]NetworkPolicyIngressRule>" in out
    )
    assert "from\t<[]NetworkPolicyPeer>" in out and "ports\t<[]NetworkPolicyPort>" in out
    assert "ingress is a list of ingress rules" in out
    ports = server.kubectl("explain", "networkpolicy.spec.ingress.ports").stdout
    assert "endPort\t<integer>" in ports and "protocol\t<string>" in ports
    assert (
        "<integer>" in server.kubectl("explain", "pod.spec.containers.ports.containerPort").stdout
    )
    crd = tmp_path / "crd.yaml"
    crd.write_text("""\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.org}
spec:
  group: example.org
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            description: The widget's desired state.
            properties:
              size: {type: integer, description: How big the widget is.}
""")
    server.kubectl("apply", "-f", str(crd))
    try:
        out = server.kubectl("explain", "widgets.spec").stdout
        assert "KIND:       Widget" in out and "size\t<integer>" in out
        assert "How big the widget is." in out
    finally:
        server.kubectl("delete", "crd", "widgets.example.org")
