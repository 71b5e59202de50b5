"""The agent's side of the controller stream: find the leader, watch, reconnect, report status.

`ControlPlaneClient.events()` is an endless async iterator of `WatchEvent`s for this node:

1. the initial objects (``ADDED``), then one ``BOOKMARK`` (the snapshot is complete);
2. deltas: ``ADDED`` / ``MODIFIED`` / ``DELETED``; an AddressGroup ``MODIFIED`` may carry only
   ``.patch`` (added/removed members; the consumer applies it to its copy);
3. when the stream breaks, the client reconnects by itself (re-reading Endpoints
   ``kube-system/antrea`` to find the current leader, and the CA from ConfigMap ``antrea-ca``)
   with capped exponential backoff. Before the objects of every connection but the first it
   yields ``WatchEvent(EventType.ERROR, message="stream-restart")``: a full state follows, and
   objects not re-sent before the next ``BOOKMARK`` are gone.

Heartbeat bookmarks (message "heartbeat") are swallowed here; a stream silent for longer than
``idle_timeout`` is considered dead (the leader's netns may vanish without a TCP reset).

``on_disconnect`` (if set) is called every time a connection is lost or a connection attempt
fails, at once and before the backoff: the consumer learns the stream is down during an outage,
not only when a later reconnect succeeds (the agent's ``controllerConnected``).

`report_status` remembers the latest status per policy and re-sends them all after each
reconnect, so a new leader learns the realization state without waiting for policy changes.
Statuses reported while one POST is in flight (or in the same loop iteration: a batch of 1,500
realized policies reports 1,500 at once) go together in the next POST to the list endpoint
(``networkpolicies/statuses``); a controller without it (404/405: older) gets one POST per
status, as before.
`report_stats` POSTs the node's per-rule traffic totals (sent periodically by the policy agent).
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import structlog

from antrea.apis.controlplane.codec import (
    DecodeError,
    EventType,
    FrameDecoder,
    WatchEvent,
    encode_status,
    encode_statuses,
)
from antrea.apis.controlplane.names import (
    CA_CONFIGMAP,
    CA_CONFIGMAP_KEY,
    ENDPOINTS_NAME,
    ENDPOINTS_PORT_NAME,
    HEARTBEAT_MESSAGE,
    NAMESPACE,
    STATUS_PATH,
    STATUSES_PATH,
    STREAM_CONTENT_TYPE,
    STREAM_CONTENT_TYPE_V2,
    WATCH_PATH,
)
from antrea.apis.controlplane.types import NetworkPolicyNodeStatus
from antrea.apis.stats.codec import encode_summary
from antrea.apis.stats.names import SUMMARY_PATH
from antrea.apis.stats.types import NodeStatsSummary
from antrea.errors import AntreaError
from antrea.k8s.lookup import config_map_value, endpoints_address
from antrea.k8s.resources import (
    ApiClientResources,
    KubeError,
    KubeResources,
    bearer_token,
)
from antrea.util import gcpause

log = structlog.get_logger(__name__)


def decode_chunk(decoder: FrameDecoder, chunk: bytes) -> list[WatchEvent]:
    """The watch events that `chunk`, as read from the stream, completes.

    Decoded objects are long-lived (the rule cache): no collection meanwhile, and a chunk that
    completed large frames is frozen (util/gcpause.py). Benchmarks that feed the agent frames
    in process decode through this too, as the agent does."""
    with gcpause.paused():
        return list(decoder.feed(chunk))


STREAM_RESTART = "stream-restart"
WATCH_ACCEPT = f"{STREAM_CONTENT_TYPE_V2}, {STREAM_CONTENT_TYPE};q=0.5"
"""The stream versions the agent decodes, the cheaper first (names.STREAM_CONTENT_TYPE_V2)."""


class StreamError(AntreaError):
    """The current connection failed; the client reconnects."""


async def discover_endpoint(kube: KubeResources, namespace: str = NAMESPACE) -> tuple[str, int]:
    """The leader's (address, port) from Endpoints ``<namespace>/antrea`` (port named https)."""
    found = await endpoints_address(kube, namespace, ENDPOINTS_NAME, port_name=ENDPOINTS_PORT_NAME)
    if found is None:
        raise StreamError(f"no controller endpoint in Endpoints {namespace}/{ENDPOINTS_NAME}")
    return found


async def fetch_ca(kube: KubeResources, namespace: str = NAMESPACE) -> bytes:
    text = await config_map_value(kube, namespace, CA_CONFIGMAP, CA_CONFIGMAP_KEY)
    if not text:
        raise StreamError(f"no {CA_CONFIGMAP_KEY} in ConfigMap {namespace}/{CA_CONFIGMAP}")
    return text.encode()


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


class ControlPlaneClient:
    """Watches the controller for one node. Construct with a kubernetes-asyncio ``ApiClient``
    (the node's kubeconfig: its token authenticates to the controller too) or, in tests, with
    ``kube=`` (a `KubeResources`) plus ``token=``."""

    def __init__(
        self,
        node_name: str,
        api_client: Any = None,
        *,
        kube: KubeResources | None = None,
        token: str | Callable[[], str | None] | None = None,
        namespace: str = NAMESPACE,
        endpoint: tuple[str, int] | None = None,
        ca_pem: bytes | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 5.0,
        idle_timeout: float = 20.0,
        connect_timeout: float = 5.0,
    ) -> None:
        if kube is None and api_client is None:
            raise ValueError("need an api_client or kube")
        self.node_name = node_name
        self.kube: KubeResources = kube or ApiClientResources(api_client)
        self._api_client = api_client
        self._token = token
        self.namespace = namespace
        self._fixed_endpoint = endpoint
        self._fixed_ca = ca_pem
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.endpoint: tuple[str, int] | None = None
        self.connected = False
        self.on_disconnect: Callable[[], None] | None = None
        self.connections = 0
        self.last_error = ""
        self._ssl: ssl.SSLContext | None = None
        self._session: aiohttp.ClientSession | None = None
        self._statuses: dict[str, NetworkPolicyNodeStatus] = {}
        self.status_reports_failed = 0
        self.status_posts = 0  # HTTP requests made for statuses (one per batch)
        self._bg: set[asyncio.Task[Any]] = set()
        # Statuses waiting for the next POST, and the future their reporters wait on.
        self._unsent: dict[str, NetworkPolicyNodeStatus] = {}
        self._unsent_done: asyncio.Future[bool] | None = None
        self._status_sender: asyncio.Task[None] | None = None
        self._list_endpoint = True  # False once the controller answered 404/405 to it

    # --- plumbing ------------------------------------------------------------------------

    def token(self) -> str | None:
        if callable(self._token):
            return self._token()
        if self._token is not None:
            return self._token
        return bearer_token(self._api_client) if self._api_client is not None else None

    def _headers(self) -> dict[str, str]:
        tok = self.token()
        return {"Authorization": f"Bearer {tok}"} if tok else {}

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _resolve(self) -> tuple[str, ssl.SSLContext]:
        """Base URL and TLS context of the current leader (re-read on every reconnect)."""
        try:
            endpoint = self._fixed_endpoint or await discover_endpoint(self.kube, self.namespace)
            ca = self._fixed_ca or await fetch_ca(self.kube, self.namespace)
        except KubeError as exc:
            raise StreamError(f"cannot reach the Kubernetes API: {exc}") from exc
        self.endpoint = endpoint
        self._ssl = ssl.create_default_context(cadata=ca.decode())
        return f"https://{_host(endpoint[0])}:{endpoint[1]}", self._ssl

    async def close(self) -> None:
        for t in list(self._bg):
            t.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- stream --------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[WatchEvent]:
        yielded_any = False
        backoff = self.backoff_initial
        try:
            while True:
                try:
                    async for ev in self._one_connection(restart=yielded_any):
                        yielded_any = True
                        if ev.type is EventType.BOOKMARK:
                            backoff = self.backoff_initial
                        yield ev
                    self.last_error = "stream ended"
                except (
                    StreamError,
                    DecodeError,
                    aiohttp.ClientError,
                    OSError,
                    TimeoutError,
                ) as exc:
                    self.last_error = str(exc) or type(exc).__name__
                self.connected = False
                if self.on_disconnect is not None:
                    self.on_disconnect()
                delay = backoff * (0.5 + random.random() / 2)
                log.info(
                    "controller_stream_reconnecting",
                    node=self.node_name,
                    error=self.last_error,
                    delay=round(delay, 2),
                )
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, self.backoff_max)
        finally:
            self.connected = False

    async def _one_connection(self, *, restart: bool) -> AsyncIterator[WatchEvent]:
        base, ctx = await self._resolve()
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.connect_timeout, connect=self.connect_timeout
        )
        async with self._get_session().get(
            base + WATCH_PATH,
            params={"nodeName": self.node_name},
            # Either version of the stream decodes; version 2 is half the bytes and cheaper.
            headers={**self._headers(), "Accept": WATCH_ACCEPT},
            ssl=ctx,
            timeout=timeout,
        ) as resp:
            if resp.status != 200:
                body = (await resp.text())[:300]
                raise StreamError(f"watch refused: HTTP {resp.status}: {body}")
            self.connections += 1
            self.connected = True
            log.info("controller_stream_connected", node=self.node_name, endpoint=self.endpoint)
            if restart:
                yield WatchEvent(EventType.ERROR, message=STREAM_RESTART)
            decoder = FrameDecoder()
            while True:
                try:
                    chunk = await asyncio.wait_for(resp.content.readany(), self.idle_timeout)
                except TimeoutError as exc:
                    raise StreamError("stream idle: no frame or heartbeat") from exc
                if not chunk:
                    raise StreamError("stream closed by the controller")
                for ev in decode_chunk(decoder, chunk):
                    if ev.type is EventType.BOOKMARK and ev.message == HEARTBEAT_MESSAGE:
                        continue
                    if ev.type is EventType.BOOKMARK:
                        self._resend_statuses()
                    yield ev

    # --- status --------------------------------------------------------------------------

    async def report_status(self, st: NetworkPolicyNodeStatus) -> None:
        """Send one policy's realization status, best effort (remembered and re-sent after
        every reconnect, so a failure here is repaired later); ``status_reports_failed``
        counts failures."""
        self._statuses[st.policy] = st
        if not await self._send_status(st):
            self.status_reports_failed += 1

    async def _send_status(self, st: NetworkPolicyNodeStatus) -> bool:
        """Queue ``st`` for the next POST (a newer status of the same policy replaces it) and
        wait for that POST's outcome."""
        loop = asyncio.get_running_loop()
        self._unsent[st.policy] = st
        if self._unsent_done is None:
            self._unsent_done = loop.create_future()
        done = self._unsent_done
        if self._status_sender is None or self._status_sender.done():
            self._status_sender = loop.create_task(self._send_unsent())
            self._bg.add(self._status_sender)
            self._status_sender.add_done_callback(self._bg.discard)
        return await asyncio.shield(done)

    async def _send_unsent(self) -> None:
        """Until nothing is queued: take everything queued, POST it, tell its reporters."""
        try:
            await asyncio.sleep(0)  # the reporters of one loop iteration join the first POST
            while self._unsent:
                batch, self._unsent = list(self._unsent.values()), {}
                done, self._unsent_done = self._unsent_done, None
                ok = False
                try:
                    ok = await self._post_statuses(batch)
                finally:
                    if done is not None and not done.done():
                        done.set_result(ok)
        finally:  # cancelled (close): whoever still waits learns it was not sent
            left, self._unsent_done = self._unsent_done, None
            self._unsent = {}
            if left is not None and not left.done():
                left.set_result(False)

    async def _post_statuses(self, batch: list[NetworkPolicyNodeStatus]) -> bool:
        if len(batch) == 1 or not self._list_endpoint:
            results = [await self._post_status(st) for st in batch]
            return all(results)
        answer = await self._post(STATUSES_PATH, encode_statuses(batch), f"{len(batch)} policies")
        if answer is None:  # an older controller: one POST per status from now on
            self._list_endpoint = False
            return await self._post_statuses(batch)
        return answer

    def forget_status(self, policy: str) -> None:
        """Stop re-sending the status of a policy this node no longer has."""
        self._statuses.pop(policy, None)

    async def _post_status(self, st: NetworkPolicyNodeStatus) -> bool:
        return await self._post(STATUS_PATH, encode_status(st), st.policy) is True

    async def _post(self, path: str, body: bytes, policy: str) -> bool | None:
        """POST a status body: True if accepted, None if the controller does not serve
        ``path`` (404/405), else False."""
        if self.endpoint is None or self._ssl is None:
            return False
        url = f"https://{_host(self.endpoint[0])}:{self.endpoint[1]}{path}"
        self.status_posts += 1
        try:
            async with self._get_session().post(
                url,
                data=body,
                headers={**self._headers(), "Content-Type": "application/x-msgpack"},
                ssl=self._ssl,
                timeout=aiohttp.ClientTimeout(total=5),
            ) as resp:
                if resp.status in (404, 405) and path == STATUSES_PATH:
                    return None
                if resp.status >= 300:
                    log.warning("status_report_refused", policy=policy, http=resp.status)
                    return False
                return True
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.info("status_report_failed", policy=policy, error=str(exc))
            return False

    async def report_stats(self, summary: NodeStatsSummary) -> bool:
        """POST this node's per-rule counters (totals: a lost report is repaired by the next)."""
        if self.endpoint is None or self._ssl is None:
            return False
        url = f"https://{_host(self.endpoint[0])}:{self.endpoint[1]}{SUMMARY_PATH}"
        try:
            async with self._get_session().post(
                url,
                data=encode_summary(summary),
                headers={**self._headers(), "Content-Type": "application/x-msgpack"},
                ssl=self._ssl,
                timeout=aiohttp.ClientTimeout(total=5),
            ) as resp:
                if resp.status >= 300:
                    log.warning("stats_report_refused", http=resp.status)
                    return False
                return True
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.info("stats_report_failed", error=str(exc))
            return False

    def _resend_statuses(self) -> None:
        if not self._statuses:
            return
        pending = list(self._statuses.values())

        async def resend() -> None:
            await asyncio.gather(*(self._send_status(st) for st in pending))

        task = asyncio.get_running_loop().create_task(resend())
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)


# --- stub consumer ---------------------------------------------------------------------------


class StreamMirror:
    """A consumer that only mirrors and logs the stream (the daemon's ``--agent-stub`` mode).

    It applies events exactly as a real agent must (restart -> rebuild at the next BOOKMARK,
    patches applied to AddressGroups) and can dump its view as JSON, which is how the lab checks
    that each node receives exactly its span. It also reports every policy as realized.
    """

    def __init__(self, client: ControlPlaneClient, dump_path: str | None = None) -> None:
        self.client = client
        self.dump_path = dump_path
        self.objects: dict[str, dict[str, Any]] = {}
        self._pending: dict[str, dict[str, Any]] | None = {}
        self.bookmarks = 0

    def state(self) -> dict[str, dict[str, Any]]:
        return self.objects

    async def run(self) -> None:
        from antrea.apis.controlplane.types import AddressGroup, AppliedToGroup, NetworkPolicy

        async for ev in self.client.events():
            target = self._pending if self._pending is not None else self.objects
            if ev.type is EventType.ERROR:
                log.info("stub_stream_restart", message=ev.message)
                self._pending = {}
                continue
            if ev.type is EventType.BOOKMARK:
                if self._pending is not None:
                    self.objects, self._pending = self._pending, None
                self.bookmarks += 1
                log.info("stub_synced", **{k: len(v) for k, v in self.objects.items()})
                await self._after_change(report_all=True)
                continue
            kind = str(ev.kind)
            per_kind = target.setdefault(kind, {})
            if ev.type is EventType.DELETED and ev.object is not None:
                per_kind.pop(ev.object.name, None)
                if isinstance(ev.object, NetworkPolicy):
                    self.client.forget_status(ev.object.name)
            elif ev.patch is not None:
                cur = per_kind.get(ev.patch.name)
                if isinstance(cur, AddressGroup):
                    per_kind[ev.patch.name] = AddressGroup(
                        cur.name, (cur.members - ev.patch.removed) | ev.patch.added
                    )
            elif ev.object is not None:
                per_kind[ev.object.name] = ev.object
            log.info(
                "stub_event",
                type=str(ev.type),
                kind=kind,
                name=ev.object.name if ev.object else (ev.patch.name if ev.patch else ""),
                members=len(ev.object.members)
                if isinstance(ev.object, AddressGroup | AppliedToGroup)
                else None,
            )
            if self._pending is None:
                await self._after_change(
                    report=ev.object
                    if isinstance(ev.object, NetworkPolicy) and ev.type is not EventType.DELETED
                    else None
                )

    async def _after_change(self, *, report_all: bool = False, report: Any = None) -> None:
        from antrea.apis.controlplane.codec import object_to_map

        if self.dump_path:
            import json
            from pathlib import Path

            view = {
                kind: {name: object_to_map(obj) for name, obj in sorted(objs.items())}
                for kind, objs in self.objects.items()
            }
            tmp = Path(self.dump_path + ".tmp")
            tmp.write_text(json.dumps(view, sort_keys=True, default=str))
            tmp.replace(self.dump_path)
        policies = list(self.objects.get("NetworkPolicy", {}).values()) if report_all else []
        if report is not None:
            policies.append(report)
        for np in policies:
            await self.client.report_status(
                NetworkPolicyNodeStatus(np.name, self.client.node_name, np.generation)
            )


# --- one-shot snapshot (debugging, lab tests) ------------------------------------------------


async def fetch_snapshot(
    node: str, kubeconfig: str | None, timeout: float = 30.0
) -> dict[str, Any]:
    """What the controller sends ``node`` right now: {kind: {name: wire map}} up to the BOOKMARK."""
    from antrea.apis.controlplane.codec import object_to_map
    from antrea.k8s.resources import load_api_client

    api_client = await load_api_client(kubeconfig)
    client = ControlPlaneClient(node, api_client, backoff_initial=0.2, backoff_max=1.0)
    view: dict[str, Any] = {}
    try:
        async with asyncio.timeout(timeout):
            async for ev in client.events():
                if ev.type is EventType.ERROR:
                    view = {}
                elif ev.type is EventType.BOOKMARK:
                    return view
                elif ev.object is not None:
                    view.setdefault(str(ev.kind), {})[ev.object.name] = object_to_map(ev.object)
    except TimeoutError as exc:
        raise StreamError(f"no snapshot within {timeout}s: {client.last_error}") from exc
    finally:
        await client.close()
        await api_client.close()
    return view


def main(argv: list[str] | None = None) -> int:
    """``python -m antrea.agent.controlplane_client --node N [--kubeconfig K]``: print the
    node's current snapshot as JSON (run it where the controller is reachable)."""
    import argparse
    import json
    import sys

    p = argparse.ArgumentParser(prog="python -m antrea.agent.controlplane_client")
    p.add_argument("--node", required=True)
    p.add_argument("--kubeconfig")
    p.add_argument("--timeout", type=float, default=30.0)
    args = p.parse_args(argv)
    from antrea.util.logging import configure

    configure(level="warning")  # logs on stderr; stdout is the JSON document
    try:
        view = asyncio.run(fetch_snapshot(args.node, args.kubeconfig, args.timeout))
    except StreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(view, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
