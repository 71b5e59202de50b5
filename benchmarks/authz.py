"""Cost of one authorization decision in the embedded API server (`antrea.testbed.apiserver.authz`).

    .venv/bin/python benchmarks/authz.py [--decisions 20000]

Starts an in-memory API server, loads the lab's identities from deploy/antrea.yml (the
bootstrapped defaults come with the server) and times `Authorization.decide` for the agent's
identity on three paths: an allowed list, a refused get (every binding scanned) and a
non-resource path. Ends with one JSON line (microseconds per decision).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from antrea.testbed.apiserver.auth import Identity, RequestAttributes
from antrea.testbed.apiserver.server import APIServer
from antrea.testbed.lab import identities


async def run(decisions: int) -> dict[str, object]:
    server = APIServer(port=0)
    await server.start()
    try:
        server.ensure_objects(identities.manifest_identity_objects())
        authz = server.authorization
        agent = Identity(
            identities.serviceaccount_user(identities.AGENT_SA),
            groups=(*identities.serviceaccount_groups(), "system:authenticated"),
        )
        cases = {
            "allowed_list_pods": RequestAttributes(verb="list", resource="pods"),
            "refused_get_secret": RequestAttributes(
                verb="get", resource="secrets", namespace="kube-system", name="antrea-controller-ca"
            ),
            "non_resource_version": RequestAttributes(verb="get", path="/version"),
        }
        bindings = len(server.store.list(("rbac.authorization.k8s.io", "clusterrolebindings")))
        out: dict[str, object] = {"decisions": decisions, "clusterrolebindings": bindings}
        for label, attrs in cases.items():
            start = time.perf_counter()
            for _ in range(decisions):
                authz.decide(agent, attrs)
            out[f"{label}_us"] = round((time.perf_counter() - start) / decisions * 1e6, 1)
        return out
    finally:
        await server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--decisions", type=int, default=20000)
    args = p.parse_args()
    print(json.dumps(asyncio.run(run(args.decisions))))


if __name__ == "__main__":
    main()
