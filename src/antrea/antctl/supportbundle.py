"""``antctl supportbundle``: one tarball with what a support case needs from a node (or, with
``--controller``, from the controller: its info, log level, task stacks, metrics and computed
policies and groups, as ``controller-<UTC time>.tar.gz``).

Run on a node (``antrea lab exec NODE -- antctl supportbundle``, or any shell with the agent's
local API at ``$ANTREA_AGENT_API``). The archive ``<dir>/<node>-<UTC time>.tar.gz`` holds:

| file | from |
| --- | --- |
| ``agentinfo.json``, ``config.json``, ``loglevel.json`` | the agent API |
| ``tasks.txt`` | every asyncio task's stack (``/debug/tasks``: the goroutine dump) |
| ``metrics.prom`` | the agent's Prometheus metrics |
| ``flows.txt`` | the bridge's OpenFlow flows, as the agent dumps them |
| ``ovsdb.json``, ``ovs-vsctl-show.txt`` | ``ovsdb-client dump`` and ``ovs-vsctl show`` |
| ``logs/...`` | ``*.log*`` of ``$ANTREA_LOG_DIR`` (/var/log/antrea) and ``$OVS_LOGDIR`` |
| ``errors.txt`` | every item that could not be collected, and why |

A failing item never stops the bundle: what could be collected is kept.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import socket
import subprocess
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from antrea.apis import agentapi

MAX_LOG_BYTES = 50 * 1024 * 1024


def register(top_sub: Any, parent: argparse.ArgumentParser) -> None:
    p = top_sub.add_parser(
        "supportbundle",
        parents=[parent],
        help="collect logs, flows, OVSDB, config, task dumps and metrics of this node",
    )
    p.add_argument("-d", "--dir", default=".", help="directory for the tarball (default .)")
    p.add_argument("--agent-api", help="agent API URL (default $ANTREA_AGENT_API)")
    p.add_argument(
        "--controller",
        action="store_true",
        help="the controller's bundle (info, log level, task stacks, metrics, computed objects)",
    )
    p.set_defaults(func=_supportbundle)


def _fetch(base: str, path: str) -> bytes:
    with urllib.request.urlopen(base.rstrip("/") + path, timeout=30) as resp:
        data: bytes = resp.read()
        return data


def _run(*argv: str) -> bytes:
    proc = subprocess.run(argv, capture_output=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            proc.stderr.decode(errors="replace").strip() or f"exit {proc.returncode}"
        )
    return proc.stdout


def _flows(base: str) -> bytes:
    flows = json.loads(_fetch(base, agentapi.OVSFLOWS))
    return "".join(f"{f.get('flow', f)}\n" for f in flows).encode()


def _ovsdb() -> bytes:
    rundir = os.environ.get("OVS_RUNDIR", "/var/run/openvswitch")
    return _run("ovsdb-client", "dump", "--format=json", f"unix:{rundir}/db.sock")


def collect(base: str, out_dir: Path) -> tuple[Path, list[str]]:
    """Write the tarball; returns its path and the items that failed."""
    items: list[tuple[str, Callable[[], bytes]]] = [
        ("agentinfo.json", lambda: _fetch(base, agentapi.AGENTINFO)),
        ("config.json", lambda: _fetch(base, agentapi.CONFIG)),
        ("loglevel.json", lambda: _fetch(base, agentapi.LOGLEVEL)),
        ("tasks.txt", lambda: _fetch(base, agentapi.DEBUG_TASKS)),
        ("metrics.prom", lambda: _fetch(base, agentapi.METRICS)),
        ("flows.txt", lambda: _flows(base)),
        ("ovsdb.json", _ovsdb),
        ("ovs-vsctl-show.txt", lambda: _run("ovs-vsctl", "show")),
    ]
    node = os.environ.get("NODE_NAME") or socket.gethostname()
    try:
        node = json.loads(_fetch(base, agentapi.AGENTINFO)).get("nodeName") or node
    except (OSError, ValueError, urllib.error.URLError):
        pass
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{node}-{stamp}.tar.gz"
    errors: list[str] = []
    with tarfile.open(path, "w:gz") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(f"{node}/{name}")
            info.size = len(data)
            info.mtime = int(dt.datetime.now(dt.UTC).timestamp())
            tar.addfile(info, io.BytesIO(data))

        for name, get in items:
            try:
                add(name, get())
            except Exception as exc:  # one missing item must not lose the others
                errors.append(f"{name}: {exc}")
        log_dirs = [
            Path(os.environ.get("ANTREA_LOG_DIR", "/var/log/antrea")),
            Path(os.environ.get("OVS_LOGDIR", "/var/log/openvswitch")),
        ]
        seen: set[Path] = set()
        for d in log_dirs:
            for f in sorted(d.glob("*.log*")) if d.is_dir() else []:
                if f in seen or not f.is_file():
                    continue
                seen.add(f)
                try:
                    with f.open("rb") as fh:
                        size = f.stat().st_size
                        fh.seek(max(0, size - MAX_LOG_BYTES))
                        add(f"logs/{d.name}/{f.name}", fh.read())
                except OSError as exc:
                    errors.append(f"logs/{f}: {exc}")
        add("errors.txt", "".join(e + "\n" for e in errors).encode())
    return path, errors


def _supportbundle(args: argparse.Namespace) -> int:
    from antrea.antctl.agent_cmds import _base

    if args.controller:
        import asyncio

        from antrea.antctl.controller_client import ControllerClient

        client = ControllerClient(
            args.kubeconfig, args.server, netns=args.netns, via_apiserver=args.via_apiserver
        )
        data = asyncio.run(
            client.request("GET", "/apis/system.antrea.io/v1beta1/supportbundle", raw=True)
        )
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        out = Path(args.dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"controller-{stamp}.tar.gz"
        path.write_bytes(data)
        print(f"supportbundle written to {path}")
        return 0

    path, errors = collect(_base(args), Path(args.dir))
    print(f"supportbundle written to {path}")
    for e in errors:
        print(f"warning: not collected: {e}")
    return 0
