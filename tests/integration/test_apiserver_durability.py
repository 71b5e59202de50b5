"""Nothing acknowledged is lost: SIGKILL the API server process mid-burst, restart it on the
same data directory, and every write that got a 2xx answer is there."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import yaml

CM = "/api/v1/namespaces/default/configmaps"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _start(data_dir: Path, port: int, kubeconfig: Path) -> subprocess.Popen[bytes]:
    kubeconfig.unlink(missing_ok=True)
    code = "import sys; from antrea.cmd.antrea import main; sys.exit(main())"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            "apiserver",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--kubeconfig-out",
            str(kubeconfig),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not kubeconfig.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("apiserver did not start")
        time.sleep(0.05)
    return proc


def _session(kubeconfig: Path) -> aiohttp.ClientSession:
    doc = yaml.safe_load(kubeconfig.read_text())
    ca = base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    token = doc["users"][0]["user"]["token"]
    server = doc["clusters"][0]["cluster"]["server"]
    ctx = ssl.create_default_context(cadata=ca)
    return aiohttp.ClientSession(
        base_url=server,
        headers={"Authorization": f"Bearer {token}"},
        connector=aiohttp.TCPConnector(ssl=ctx, limit=0),
    )


async def _writer(session: aiohttp.ClientSession, prefix: str, acked: set[str]) -> None:
    n = 0
    while True:
        name = f"{prefix}-{n}"
        n += 1
        body = {"metadata": {"name": name}, "data": {"k": "v" * 200}}
        try:
            async with session.post(CM, json=body) as resp:
                if resp.status == 201:
                    acked.add(name)
        except (TimeoutError, aiohttp.ClientError, ConnectionError):
            return


async def _burst_then_kill(proc: subprocess.Popen[bytes], kubeconfig: Path, trial: int) -> set[str]:
    acked: set[str] = set()
    async with _session(kubeconfig) as session:
        writers = [asyncio.create_task(_writer(session, f"t{trial}w{i}", acked)) for i in range(12)]
        await asyncio.sleep(1.5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await asyncio.gather(*writers, return_exceptions=True)
        for task in writers:
            task.cancel()
    return acked


async def _stored(kubeconfig: Path) -> set[str]:
    async with _session(kubeconfig) as session, session.get(CM) as resp:
        assert resp.status == 200
        return {o["metadata"]["name"] for o in (await resp.json())["items"]}


@pytest.mark.timeout(180)
async def test_sigkill_loses_no_acknowledged_write(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    kubeconfig = tmp_path / "admin.kubeconfig"
    port = _free_port()
    acked: set[str] = set()
    proc = _start(data_dir, port, kubeconfig)
    try:
        for trial in range(3):
            acked |= await _burst_then_kill(proc, kubeconfig, trial)
            proc = _start(data_dir, port, kubeconfig)
            stored = await _stored(kubeconfig)
            lost = acked - stored
            assert not lost, f"trial {trial}: {len(lost)} acknowledged creates lost"
        assert len(acked) > 100  # the bursts really wrote
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
