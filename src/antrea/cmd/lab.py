"""`antrea lab`: a multi-node Kubernetes lab on one Linux host (see docs/design/lab.md)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("lab", help="multi-node lab on this host", description=__doc__)
    sub = p.add_subparsers(dest="lab_cmd", metavar="COMMAND", required=True)

    def cmd(name: str, help: str, func: Any) -> argparse.ArgumentParser:
        c: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help)
        c.add_argument("--name", default=None, help="lab name (default: the only lab running)")
        c.set_defaults(func=func)
        return c

    up = cmd("up", "create and start a lab", _up)
    up.add_argument("--nodes", type=int, default=2, help="number of nodes (default 2)")
    up.add_argument(
        "--pod-cidr", default="10.244.0.0/16", help="cluster CIDR; node i gets its i-th /24"
    )
    up.add_argument("--cni", choices=("antrea", "reference"), default=None,
                    help="node network: antrea agent + plugin, or reference bridge")  # fmt: skip
    up.add_argument("--encap", choices=("vxlan", "geneve", "none"), default="vxlan",
                    help="antrea CNI: tunnel type, or none for noEncap")  # fmt: skip
    up.add_argument(
        "--kubeconfig", default=None, help="use this API server instead of the embedded one"
    )
    up.add_argument("--no-wait", action="store_true", help="do not wait for the node network")
    up.add_argument("--kubernetes", choices=("embedded", "real"), default="embedded",
                    help="embedded API server and kubelets, or real kube-apiserver, etcd, "
                    "controller-manager, scheduler, containerd and kubelets (no CNI installed: "
                    "then `kubectl apply -f deploy/antrea.yml`)")  # fmt: skip
    up.add_argument(
        "--k8s-bin",
        default=None,
        metavar="DIR",
        help="--kubernetes real: directory of kube-apiserver, kube-controller-manager, "
        "kube-scheduler, kubelet (default: the PATH)",
    )

    cmd("down", "stop a lab and remove everything it created", _down)
    st = cmd("status", "show a lab's nodes and processes", _status)
    st.add_argument("-o", "--output", choices=("table", "json"), default="table")
    cmd("kubeconfig", "print the path of the lab's kubeconfig", _kubeconfig)

    mf = cmd(
        "manifest",
        "print deploy/antrea.yml with a real lab's ConfigMap options (netdev datapath, "
        "kubeAPIServerOverride): `antrea lab manifest | kubectl apply -f -`",
        _manifest,
    )
    mf.add_argument("-f", "--file", default=None, help="the manifest (default: deploy/antrea.yml)")
    mf.add_argument("--encap-mode", choices=("encap", "noEncap"), default="encap")

    ex = cmd("exec", "run a command in a pod's (NS/POD) or a node's (NODE) namespace", _exec)
    ex.add_argument("target", help="NS/POD or NODE")
    ex.add_argument("argv", nargs=argparse.REMAINDER, help="-- CMD...")

    pr = cmd("probe", "connectivity matrix between all pods", _probe)
    pr.add_argument("--protocol", choices=("TCP", "UDP", "tcp", "udp"), default=None)
    pr.add_argument("--port", type=int, default=None, help="default 80 (Service: its first port)")
    pr.add_argument(
        "--service", default=None, help="NS/NAME: probe the Service's ClusterIP from every pod"
    )
    pr.add_argument(
        "-n", "--namespaces", default=None, help="comma-separated namespaces to include"
    )
    pr.add_argument("-o", "--output", choices=("table", "json"), default="table")

    ra = cmd("restart-agent", "kill a node's agent and start it again", _restart_agent)
    ra.add_argument("node")
    cmd(
        "restart-supervisor",
        "restart the API server and kubelets (pods keep running)",
        _restart_sup,
    )
    cc = cmd("cni-check", "run CNI CHECK for a pod, as a runtime would", _cni_check)
    cc.add_argument("pod", help="NS/POD")

    lg = cmd(
        "logs",
        "print a node agent's log, or the supervisor's (`supervisor`); real labs: "
        "NODE[/kubelet|/containerd] or kube-apiserver, etcd, kube-controller-manager, "
        "kube-scheduler",
        _logs,
    )
    lg.add_argument("component", help="NODE or supervisor")
    lg.add_argument("--tail", type=int, default=0, help="only the last N lines")

    demo = cmd("demo", "2-node lab, pods, matrix, a NetworkPolicy, matrix again", _demo)
    demo.add_argument("--cni", choices=("antrea", "reference"), default=None)
    demo.add_argument("--down", action="store_true", help="tear the lab down at the end")

    fw = sub.add_parser("forward")  # internal: the real lab's host -> API server forwarder
    fw.add_argument("--name", required=True)
    fw.add_argument("--port", type=int, required=True)
    fw.set_defaults(func=_forward)

    sup = sub.add_parser("supervise")  # internal: no help, so not listed
    sup.add_argument("--name", required=True)
    sup.set_defaults(func=_supervise)


def _fail(msg: str) -> int:
    print(f"antrea lab: {msg}", file=sys.stderr)
    return 1


def _guard(fn: Any) -> Any:
    def wrapper(args: argparse.Namespace) -> int:
        from antrea.testbed.lab.state import LabError

        try:
            rc: int = fn(args)
            return rc
        except LabError as exc:
            return _fail(str(exc))

    return wrapper


@_guard
def _up(args: argparse.Namespace) -> int:
    from antrea.testbed.lab import lifecycle
    from antrea.testbed.lab.defaults import default_cni

    spec = lifecycle.up(
        name=args.name or "lab",
        nodes=args.nodes,
        cni=args.cni or default_cni(),
        encap=args.encap,
        pod_cidr=args.pod_cidr,
        kubeconfig=args.kubeconfig,
        wait_network=not args.no_wait,
        kubernetes=args.kubernetes,
        k8s_bin=args.k8s_bin,
    )
    if spec.kubernetes == "real":
        print(f"lab {spec.name!r} is up: {len(spec.nodes)} nodes, real Kubernetes "
              f"({spec.k8s_bin}), no CNI yet:")  # fmt: skip
        print(
            "  kubectl apply -f deploy/antrea.yml   (this lab's settings are in ConfigMap "
            "kube-system/antrea-config-overrides)"
        )
    else:
        print(f"lab {spec.name!r} is up: {len(spec.nodes)} nodes, {spec.cni} CNI")
    print(f"kubeconfig: {spec.kubeconfig}")
    print(f"  export KUBECONFIG={spec.kubeconfig}")
    return 0


@_guard
def _down(args: argparse.Namespace) -> int:
    from antrea.testbed.lab import lifecycle
    from antrea.testbed.lab.state import resolve_name

    name = resolve_name(args.name)
    removed = lifecycle.down(name)
    print(f"lab {name!r} removed ({len(removed)} namespaces/directories)")
    return 0


@_guard
def _status(args: argparse.Namespace) -> int:
    from antrea.testbed.lab import lifecycle, state

    doc = lifecycle.status(state.load(args.name))
    if args.output == "json":
        print(json.dumps(doc, indent=2))
        return 0
    sup = doc["supervisor"]
    if doc["kubernetes"] == "real":
        print(f"lab {doc['name']}: real Kubernetes, apiserver={doc['apiserver']} (forwarded)")
        print(f"  kubeconfig {doc['kubeconfig']}")
        for comp, up in doc["components"].items():
            print(f"  {comp:28} {'running' if up else 'NOT RUNNING'}")
        print(f"  forwarder {'running' if sup['running'] else 'NOT RUNNING'} (pid {sup['pid']})")
        return 0 if sup["running"] and all(doc["components"].values()) else 1
    print(f"lab {doc['name']}: cni={doc['cni']} encap={doc['encap']} apiserver={doc['apiserver']}")
    print(f"  supervisor pid {sup['pid']} {'running' if sup['running'] else 'NOT RUNNING'}")
    print(f"  kubeconfig {doc['kubeconfig']}")
    print(f"  {'NODE':8} {'IP':14} {'POD CIDR':16} {'OVS':5} {'AGENT':6} {'PODS':5} "
          f"{'NETWORK':9} RESTARTS")  # fmt: skip
    for n in doc["nodes"]:
        agent = "-" if n["agent"] is None else ("up" if n["agent"] else "down")
        ovs = "up" if n["ovs"] else "down"
        net = "ready" if n["networkReady"] else "not ready"
        restarts = ",".join(f"{k}={v}" for k, v in sorted(n.get("restarts", {}).items())) or "-"
        print(
            f"  {n['name']:8} {n['ip']:14} {n['podCIDR']:16} {ovs:5} {agent:6} {n['pods']:<5} "
            f"{net:9} {restarts}"
        )
    return 0 if sup["running"] else 1


@_guard
def _kubeconfig(args: argparse.Namespace) -> int:
    from antrea.testbed.lab import state

    print(state.load(args.name).kubeconfig)
    return 0


@_guard
def _manifest(args: argparse.Namespace) -> int:
    from pathlib import Path

    from antrea.testbed.lab import state
    from antrea.testbed.lab.realk8s import install

    spec = state.load(args.name)
    path = Path(args.file) if args.file else install.MANIFEST
    if not path.is_file():
        return _fail(f"{path}: no such file (pass -f deploy/antrea.yml)")
    sys.stdout.write(install.lab_manifest(spec, encap_mode=args.encap_mode, manifest=path))
    return 0


@_guard
def _exec(args: argparse.Namespace) -> int:
    from antrea.testbed.lab import netns, sandbox, state

    spec = state.load(args.name)
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        argv = [os.environ.get("SHELL", "/bin/bash")]
    env = dict(os.environ)
    if "/" in args.target and spec.kubernetes == "real":
        from antrea.testbed.lab.realk8s.pods import find_pod

        found = find_pod(spec, args.target)
        if found is None:
            return _fail(f"no running pod {args.target} in lab {spec.name!r}")
        node_name, path = found
        env.update(spec.node(node_name).env())
        env["PATH"] = f"{os.path.dirname(sys.executable)}:{env.get('PATH', '/usr/bin:/bin')}"
        full = ["nsenter", f"--net={path}", *argv]
        sys.stdout.flush()
        os.execvpe(full[0], full, env)
    if "/" in args.target:
        sb = sandbox.find(spec, args.target)
        if sb is None:
            return _fail(f"no running pod {args.target} in lab {spec.name!r}")
        target_ns = sb.netns
        node = spec.node(sb.node)
    else:
        node = spec.node(args.target)
        target_ns = node.netns
    env.update(node.env())
    # antctl and antrea live next to the interpreter running us (a venv's bin dir may not be on
    # the caller's PATH): put it first so `antrea lab exec NODE -- antctl ...` just works.
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = f"{bindir}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    full = netns.exec_argv(target_ns, argv)
    sys.stdout.flush()
    os.execvpe(full[0], full, env)
    return 127  # not reached: execvpe replaces the process or raises


@_guard
def _probe(args: argparse.Namespace) -> int:
    import uvloop

    from antrea.testbed.lab import state
    from antrea.testbed.lab.kube import KubeClient
    from antrea.testbed.lab.probe import (
        lab_targets,
        probe_matrix,
        probe_service,
        render_table,
        service_frontend,
    )

    spec = state.load(args.name)
    namespaces = args.namespaces.split(",") if args.namespaces else None

    async def go() -> dict[str, Any]:
        ns, _, name = (args.service or "").rpartition("/")
        key = f"{ns or 'default'}/{name}"
        svc: dict[str, Any] = {}
        async with KubeClient.from_kubeconfig(spec.kubeconfig) as client:
            targets = await lab_targets(spec, client, namespaces=namespaces)
            if args.service:
                svc = await client.get(f"/api/v1/namespaces/{key.replace('/', '/services/')}")
        if args.service:
            ip, port, proto = service_frontend(svc, args.port, args.protocol)
            return await probe_service(targets, key, ip, protocol=proto, port=port)
        protocol = (args.protocol or "TCP").upper()
        return await probe_matrix(targets, protocol=protocol, port=args.port or 80)

    doc = uvloop.run(go())
    print(json.dumps(doc) if args.output == "json" else render_table(doc))
    return 0


@_guard
def _logs(args: argparse.Namespace) -> int:
    from antrea.testbed.lab import state

    spec = state.load(args.name)
    if spec.kubernetes == "real":
        # NODE[/kubelet|/containerd] or a control-plane component (kube-apiserver, etcd, ...)
        node, _, what = args.component.partition("/")
        if node in spec.node_names():
            path = spec.node(node).path / f"{what or 'kubelet'}.log"
        else:
            path = spec.path / "control" / f"{args.component}.log"
    else:
        path = (
            spec.supervisor_log
            if args.component == "supervisor"
            else spec.node(args.component).agent_log
        )
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return _fail(f"no log yet at {path}")
    print("\n".join(lines[-args.tail :] if args.tail else lines))
    return 0


@_guard
def _restart_agent(args: argparse.Namespace) -> int:
    from antrea.testbed.lab import lifecycle, state

    pid = lifecycle.restart_agent(state.load(args.name), args.node)
    print(f"agent on {args.node} restarted (pid {pid})")
    return 0


@_guard
def _restart_sup(args: argparse.Namespace) -> int:
    from antrea.testbed.lab import lifecycle, state

    lifecycle.restart_supervisor(state.load(args.name))
    print("lab supervisor restarted")
    return 0


@_guard
def _cni_check(args: argparse.Namespace) -> int:
    from pathlib import Path

    import uvloop

    from antrea.testbed.lab import sandbox, state
    from antrea.testbed.lab.cniruntime import CniError, CniRuntime
    from antrea.testbed.lab.kubelet import REFERENCE_CNI_DIR, attachment

    spec = state.load(args.name)
    sb = sandbox.find(spec, args.pod)
    if sb is None or sb.host_network:
        return _fail(f"no CNI-attached pod {args.pod} in lab {spec.name!r}")
    node = spec.node(sb.node)
    rt = CniRuntime(
        node_netns=node.netns, conf_dir=node.cni_conf_dir,
        bin_dirs=[node.cni_bin_dir, Path(REFERENCE_CNI_DIR)], cache_dir=node.cni_cache_dir,
    )  # fmt: skip
    try:
        uvloop.run(rt.check(attachment(sb)))
    except CniError as exc:
        return _fail(str(exc))
    print(f"CNI CHECK {args.pod}: ok")
    return 0


@_guard
def _demo(args: argparse.Namespace) -> int:
    from antrea.testbed.lab.defaults import default_cni
    from antrea.testbed.lab.demo import run_demo

    return run_demo(name=args.name or "demo", cni=args.cni or default_cni(), teardown=args.down)


def _forward(args: argparse.Namespace) -> int:
    import uvloop

    from antrea.testbed.lab import state
    from antrea.testbed.lab.realk8s import forward

    uvloop.run(forward.run(state.load(args.name), args.port))
    return 0


def _supervise(args: argparse.Namespace) -> int:
    import uvloop

    from antrea.testbed.lab import state, supervisor

    spec = state.load(args.name)
    uvloop.run(supervisor.run(spec))
    return 0
