"""The controller's /livez and /readyz: ready = synced and (leading with Endpoints published, or
standing by behind an observed leader); the Service is selector-less, so readiness never makes a
second writer of Endpoints ``antrea``."""

from __future__ import annotations

import time

from antrea.controller.config import ControllerConfig
from antrea.controller.controller import ENDPOINTS_RECHECK, ControllerCandidate
from antrea.k8s.resources import JSON
from antrea.util.health import report


class NoKube:
    async def get(self, path: str) -> JSON | None:
        return None

    async def create(self, collection: str, body: JSON) -> JSON:
        return body

    async def replace(self, path: str, body: JSON) -> JSON:
        return body


def readyz(cand: ControllerCandidate) -> tuple[int, str]:
    resp = report(cand.server.readyz_checks, verbose=True)
    assert resp.text is not None
    return resp.status, resp.text


async def test_readyz_follows_sync_and_leadership() -> None:
    cand = ControllerCandidate(ControllerConfig(node_name="n1"), NoKube(), api_client=None)
    status, text = readyz(cand)
    assert status == 500
    assert "[-]inputs-synced failed" in text and "[-]leader-election failed" in text

    cand.inputs.synced.set()
    cand.elector.leader = "n2"  # a live leader elsewhere: a ready hot standby
    assert readyz(cand)[0] == 200

    cand.leading = True  # just elected: not ready until its Endpoints are written
    status, text = readyz(cand)
    assert status == 500 and "Endpoints not published yet" in text
    cand.published_at = time.monotonic()
    assert readyz(cand)[0] == 200
    cand.published_at = time.monotonic() - 4 * ENDPOINTS_RECHECK  # publishing stalled
    assert readyz(cand)[0] == 500

    await cand._on_stopped_leading()
    assert cand.published_at is None and not cand.leading


async def test_livez_fails_when_a_role_stopped() -> None:
    import asyncio

    cand = ControllerCandidate(ControllerConfig(node_name="n1"), NoKube(), api_client=None)
    assert report(cand.server.livez_checks).status == 200

    async def crash() -> None:
        raise RuntimeError("informer died")

    task = asyncio.get_running_loop().create_task(crash(), name="informers")
    await asyncio.sleep(0)
    cand._roles = [task]
    resp = report(cand.server.livez_checks)
    assert resp.status == 500 and "stopped: informers" in (resp.text or "")
    assert task.exception() is not None
