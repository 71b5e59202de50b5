"""antctl finds the controller through the objects the controller publishes (names from
antrea.apis.controlplane.names), and says which one is missing when it cannot."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from antrea.antctl.controller_client import AntctlError, ControllerClient
from antrea.apis.controlplane import names
from antrea.testbed.apiserver.kubeconfig import render_kubeconfig, write_kubeconfig
from antrea.testbed.apiserver.server import APIServer

INFO = "/apis/system.antrea.io/v1beta1/controllerinfo"


@pytest.fixture
async def apiserver(tmp_path: Path) -> AsyncIterator[tuple[APIServer, Path]]:
    server = APIServer(port=0)
    await server.start()
    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(
        kubeconfig,
        render_kubeconfig(server=server.url, ca_pem=server.ca_pem, token=server.admin_token),
    )
    try:
        yield server, kubeconfig
    finally:
        await server.stop()


def _ca(server: APIServer) -> tuple[tuple[str, str], dict[str, Any]]:
    return (
        ("", "configmaps"),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": names.CA_CONFIGMAP, "namespace": names.NAMESPACE},
            "data": {names.CA_CONFIGMAP_KEY: server.ca_pem.decode()},
        },
    )


async def test_no_ca_configmap_is_named(apiserver: Any) -> None:
    _, kubeconfig = apiserver
    with pytest.raises(AntctlError, match=r"no ca\.crt in ConfigMap kube-system/antrea-ca"):
        await ControllerClient(str(kubeconfig), via_apiserver=False).get(INFO)


async def test_no_endpoints_is_named(apiserver: Any) -> None:
    server, kubeconfig = apiserver
    server.ensure_objects([_ca(server)])
    with pytest.raises(AntctlError, match="no controller endpoint in Endpoints kube-system/antrea"):
        await ControllerClient(str(kubeconfig), via_apiserver=False).get(INFO)
