"""Start-up concerns: tokens, certificates, kubeconfig, extra listening sockets."""

from __future__ import annotations

import base64
import ipaddress
import socket
import ssl
from pathlib import Path

import aiohttp
import yaml
from cryptography import x509

from antrea.testbed.apiserver.auth import parse_token_csv
from antrea.testbed.apiserver.certs import ensure_certs
from antrea.testbed.apiserver.server import APIServer


async def _get(url: str, ca: bytes, token: str) -> tuple[int, dict[str, object]]:
    ctx = ssl.create_default_context(cadata=ca.decode())
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s,
        s.get(url, headers={"Authorization": f"Bearer {token}"}) as resp,
    ):
        return resp.status, await resp.json()


def test_token_csv_format() -> None:
    tokens = parse_token_csv(
        't1,admin,admin,"system:masters"\n# comment\n\n'
        't2,system:node:node1,n1,"system:nodes,extra"\n'
    )
    assert tokens["t1"].groups == ("system:masters",)
    assert tokens["t2"].user == "system:node:node1"
    assert tokens["t2"].groups == ("system:nodes", "extra")


async def test_token_file_identities_and_kubeconfig(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(
        'admintok,admin,admin,"system:masters"\nnodetok,system:node:node1,node1,"system:nodes"\n'
    )
    async with APIServer(port=0, token_auth_file=tokens) as server:
        assert server.admin_token == "admintok"
        status, _ = await _get(server.url + "/api/v1/nodes", server.ca_pem, "nodetok")
        assert status == 200
        kc = yaml.safe_load(server.kubeconfig(token="nodetok", user="system:node:node1"))
        cluster = kc["clusters"][0]["cluster"]
        assert cluster["server"] == server.url
        assert base64.b64decode(cluster["certificate-authority-data"]) == server.ca_pem
        assert kc["users"][0]["user"]["token"] == "nodetok"
        path = tmp_path / "out" / "admin.kubeconfig"
        server.write_kubeconfig(path)
        assert path.stat().st_mode & 0o777 == 0o600
        assert yaml.safe_load(path.read_text())["users"][0]["user"]["token"] == "admintok"


async def test_generated_admin_token_is_persisted(tmp_path: Path) -> None:
    async with APIServer(port=0, data_dir=tmp_path) as server:
        token = server.admin_token
    assert parse_token_csv((tmp_path / "tokens.csv").read_text())[token].user == "admin"
    async with APIServer(port=0, data_dir=tmp_path) as server:
        assert server.admin_token == token


async def test_add_socket_serves_with_same_tls(tmp_path: Path) -> None:
    """A listening socket made elsewhere (the lab: in another netns) is served too."""
    async with APIServer(port=0) as server:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        port = sock.getsockname()[1]
        await server.add_socket(sock)
        status, body = await _get(
            f"https://127.0.0.1:{port}/version", server.ca_pem, server.admin_token
        )
        assert status == 200 and body["major"] == "1"


def test_certificates_are_reused_and_reissued_for_new_sans(tmp_path: Path) -> None:
    first = ensure_certs(tmp_path)
    again = ensure_certs(tmp_path)
    assert again == first
    more = ensure_certs(tmp_path, extra_sans=("10.1.2.3", "api.lab"))
    assert more.ca_pem == first.ca_pem and more.cert_pem != first.cert_pem
    cert = x509.load_pem_x509_certificate(more.cert_pem)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("10.1.2.3") in sans.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    assert {"localhost", "api.lab"} <= set(sans.get_values_for_type(x509.DNSName))
