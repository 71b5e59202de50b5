"""Operator commands: ``log-level``, ``completion``, ``supportbundle``.

- ``log-level [LEVEL]``: show or change a running component's log level. On a node (agent
  mode: ``$ANTREA_AGENT_API`` set) it talks to the local agent; otherwise, or with
  ``--controller``, to the controller (``system.antrea.io`` ``loglevels``: RBAC ``get`` /
  ``update``).
- ``completion bash|zsh|fish``: a completion script generated from the command tree, so it
  never lists a command that does not exist.
- ``supportbundle``: on a node, a tarball of what a support case needs from this agent (see
  `antrea.antctl.supportbundle`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.error
import urllib.request
from typing import Any

from antrea.antctl.controller_client import AntctlError, ControllerClient
from antrea.apis import agentapi
from antrea.apis.controlplane import names

SYSTEM = names.SYSTEM_PATH
LEVELS = ("debug", "info", "warning", "error", "critical")


def register(top_sub: Any, parent: argparse.ArgumentParser) -> None:
    from antrea.antctl import supportbundle

    p = top_sub.add_parser(
        "log-level",
        parents=[parent],
        help="show or change the log level of the local agent (on a node) or the controller",
    )
    p.add_argument("level", nargs="?", choices=LEVELS, help="new level (omit to show it)")
    p.add_argument("--controller", action="store_true", help="the controller, even on a node")
    p.add_argument("--agent-api", help="agent API URL (default $ANTREA_AGENT_API)")
    p.set_defaults(func=_log_level)

    p = top_sub.add_parser("completion", parents=[parent], help="print a shell completion script")
    p.add_argument("shell", choices=("bash", "zsh", "fish"))
    p.set_defaults(func=_completion)

    p = top_sub.add_parser("query", help="ask the controller about an endpoint")
    query_sub = p.add_subparsers(dest="query", metavar="QUERY", required=True)
    q = query_sub.add_parser(
        "endpoint",
        parents=[parent],
        help="the policies applied to a pod and the rules that select it as a peer",
    )
    q.add_argument("-n", "--namespace", default="default", help="pod namespace")
    q.add_argument("-p", "--pod", required=True, help="pod name")
    q.set_defaults(func=_query_endpoint)
    q = query_sub.add_parser(
        "networkpolicyevaluation",
        aliases=["npe"],
        parents=[parent],
        help="the policy rule that decides traffic from one pod to another",
    )
    q.add_argument("-S", "--source", required=True, help="source pod NAMESPACE/NAME")
    q.add_argument("-D", "--destination", required=True, help="destination pod NAMESPACE/NAME")
    q.set_defaults(func=_query_evaluation)

    supportbundle.register(top_sub, parent)


# -- log-level -------------------------------------------------------------------------------


def _agent_request(base: str, method: str, path: str) -> Any:
    req = urllib.request.Request(base.rstrip("/") + path, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read().decode())
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace").strip()
        raise AntctlError(f"agent answered {exc.code}: {body or exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise AntctlError(f"cannot reach the agent at {base} ({exc})") from None


def _log_level(args: argparse.Namespace) -> int:
    from antrea.antctl.agent_cmds import _base, agent_mode

    query = f"?level={args.level}" if args.level else ""
    method = "PUT" if args.level else "GET"
    if not args.controller and (agent_mode() or args.agent_api):
        data = _agent_request(_base(args), method, agentapi.LOGLEVEL + query)
    else:
        client = ControllerClient(
            args.kubeconfig, args.server, netns=args.netns, via_apiserver=args.via_apiserver
        )
        params = {"level": args.level} if args.level else None
        data = asyncio.run(client.request(method, f"{SYSTEM}/loglevel", params))
    print(data.get("level", ""))
    return 0


# -- query endpoint --------------------------------------------------------------------------


def _policy(ref: dict[str, Any]) -> str:
    where = f"{ref.get('namespace')}/" if ref.get("namespace") else ""
    return f"{ref.get('type')}:{where}{ref.get('name')}"


def _query_endpoint(args: argparse.Namespace) -> int:
    from antrea.antctl.output import emit

    client = ControllerClient(
        args.kubeconfig, args.server, netns=args.netns, via_apiserver=args.via_apiserver
    )
    data = asyncio.run(
        client.get(
            names.ENDPOINT_QUERIES_PATH,
            {"namespace": args.namespace, "pod": args.pod},
        )
    )
    if args.output != "table":
        return emit(data, args.output, [])
    for ep in data.get("endpoints") or []:
        print(f"Endpoint {ep['namespace']}/{ep['name']}")
        print("Applied policies:")
        for ref in ep.get("appliedPolicies") or []:
            print(f"  {_policy(ref)}  uid={ref.get('uid')}")
        for title, key in (("Ingress rules (pod as source)", "ingressSrcRules"),
                           ("Egress rules (pod as destination)", "egressDstRules")):  # fmt: skip
            print(f"{title}:")
            for rule in ep.get(key) or []:
                name = f" ({rule['ruleName']})" if rule.get("ruleName") else ""
                print(f"  {_policy(rule['policyRef'])} rule {rule['ruleIndex']}{name}")
    return 0


def _query_evaluation(args: argparse.Namespace) -> int:
    from antrea.antctl.output import emit

    def pod(value: str) -> str:
        return value if "/" in value else f"default/{value}"

    client = ControllerClient(
        args.kubeconfig, args.server, netns=args.netns, via_apiserver=args.via_apiserver
    )
    data = asyncio.run(
        client.get(
            names.EVALUATION_PATH,
            {"source": pod(args.source), "destination": pod(args.destination)},
        )
    )
    if args.output != "table":
        return emit(data, args.output, [])
    r = data["response"]
    where = f"{_policy(r['policyRef'])} rule {r['ruleIndex']}" if r.get("policyRef") else ""
    why = r.get("reason", "")
    print(f"{data['source']} -> {data['destination']}: {r['decision']} ({r['direction']})")
    print(f"  {where or why}")
    return 0


# -- completion ------------------------------------------------------------------------------


def _tree(parser: argparse.ArgumentParser) -> dict[str, Any]:
    """{"opts": [...], "subs": {name: tree}} for the parser and its subcommands."""
    opts: list[str] = []
    subs: dict[str, Any] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                subs[name] = _tree(sub)
        else:
            opts.extend(o for o in action.option_strings if o.startswith("--"))
            if action.choices and not action.option_strings:
                subs.update({str(c): {"opts": [], "subs": {}} for c in action.choices})
    return {"opts": sorted(set(opts)), "subs": subs}


def _paths(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    out = [(prefix, tree)]
    for name, sub in tree["subs"].items():
        out.extend(_paths(sub, (*prefix, name)))
    return out


def completion_script(shell: str, prog: str = "antctl") -> str:
    from antrea.antctl.cli import build_parser

    tree = _tree(build_parser())
    entries = _paths(tree)
    if shell == "fish":
        lines = [f"# fish completion for {prog}", f"complete -c {prog} -f"]
        for path, node in entries:
            cond = (
                "__fish_use_subcommand"
                if not path
                else " && ".join(f"__fish_seen_subcommand_from {p}" for p in path)
            )
            for name in sorted(node["subs"]):
                lines.append(f"complete -c {prog} -n '{cond}' -a {name}")
            for opt in node["opts"]:
                lines.append(f"complete -c {prog} -n '{cond}' -l {opt[2:]}")
        return "\n".join(lines) + "\n"
    func = "_" + prog.replace("-", "_")
    cases = []
    for path, node in entries:
        words = " ".join(sorted(node["subs"]) + node["opts"])
        cases.append(f'        "{" ".join(path)}") words="{words}" ;;')
    body = "\n".join(cases)
    bash = f"""# bash completion for {prog}
{func}() {{
    local cur path w i
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    path=""
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${{COMP_WORDS[i]}}"
        case "$w" in -*) continue ;; esac
        {func}_words "${{path:+$path }}$w"
        if [ -n "$words" ]; then path="${{path:+$path }}$w"; fi
    done
    {func}_words "$path"
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
{func}_words() {{
    words=""
    case "$1" in
{body}
    esac
}}
"""
    if shell == "bash":
        return bash + f"complete -F {func} {prog}\n"
    # zsh: bash completion through bashcompinit, as many CLIs ship it.
    return (
        f"#compdef {prog}\nautoload -U +X bashcompinit && bashcompinit\n"
        + bash
        + f"complete -F {func} {prog}\n"
    )


def _completion(args: argparse.Namespace) -> int:
    prog = "kubectl-antrea" if sys.argv and sys.argv[0].endswith("kubectl-antrea") else "antctl"
    sys.stdout.write(completion_script(args.shell, prog))
    return 0
