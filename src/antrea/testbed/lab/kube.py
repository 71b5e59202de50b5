"""A small Kubernetes REST client for the lab (aiohttp): kubeconfig, CRUD, list+watch.

The lab talks to the embedded API server or a real kube-apiserver with the same calls. It needs
only a dozen requests, raw JSON objects and a resilient list+watch loop, so it uses plain
aiohttp rather than the generated kubernetes-asyncio models (which cost ~0.8 s to import in
every `antrea lab` command).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import structlog

log = structlog.get_logger(__name__)

Obj = dict[str, Any]


class ApiError(Exception):
    """The API server answered with an error status."""

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(f"{status} {reason}: {message}".strip())
        self.status = status
        self.reason = reason
        self.message = message


class WatchExpired(ApiError):
    """410 Gone: the resourceVersion is too old; re-list."""


@dataclass(slots=True)
class Kubeconfig:
    server: str
    token: str | None
    ssl: ssl.SSLContext | bool
    server_name: str | None

    @classmethod
    def load(cls, path: Path | str) -> Kubeconfig:
        from antrea.k8s.client import read_kubeconfig

        kc = read_kubeconfig(path)
        sslctx: ssl.SSLContext | bool = False
        if kc.server.startswith("https"):
            if kc.insecure_skip_tls_verify:
                sslctx = ssl.create_default_context()
                sslctx.check_hostname = False
                sslctx.verify_mode = ssl.CERT_NONE
            else:
                ca = kc.ca.read() if kc.ca is not None else None
                sslctx = ssl.create_default_context(cadata=ca.decode() if ca else None)
            if kc.client_cert is not None and kc.client_key is not None:
                from antrea.util.pki import load_cert_chain_pem  # cryptography: only if needed

                load_cert_chain_pem(sslctx, kc.client_cert.read(), kc.client_key.read())
        return cls(
            server=kc.server,
            token=kc.token,
            ssl=sslctx,
            server_name=kc.tls_server_name,
        )


class KubeClient:
    """Raw JSON requests against one API server. Use as an async context manager."""

    def __init__(self, config: Kubeconfig) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(cls, path: Path | str) -> KubeClient:
        return cls(Kubeconfig.load(path))

    async def __aenter__(self) -> KubeClient:
        headers = {"Accept": "application/json", "User-Agent": "antrea-lab"}
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        self._session = aiohttp.ClientSession(
            headers=headers,
            connector=aiohttp.TCPConnector(ssl=self.config.ssl, limit=64),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("KubeClient used outside `async with`")
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> Obj:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        async with self.session.request(
            method,
            self.config.server + path,
            params=params,
            data=data,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
            server_hostname=self.config.server_name,
        ) as resp:
            text = await resp.text()
            if resp.status >= 400:
                raise _error(resp.status, text)
            return json.loads(text) if text else {}

    async def get(self, path: str) -> Obj:
        return await self.request("GET", path)

    async def get_or_none(self, path: str) -> Obj | None:
        try:
            return await self.get(path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, path: str, **params: str) -> Obj:
        return await self.request("GET", path, params=params or None)

    async def create(self, path: str, body: Obj) -> Obj:
        return await self.request("POST", path, body=body)

    async def merge_patch(self, path: str, body: Obj) -> Obj:
        return await self.request(
            "PATCH", path, body=body, content_type="application/merge-patch+json"
        )

    async def delete(
        self, path: str, *, grace_seconds: int | None = None, uid: str | None = None
    ) -> Obj | None:
        """Delete; a missing object (404) or, with ``uid``, a different one (409) is a no-op."""
        body: Obj | None = None
        if grace_seconds is not None or uid:
            body = {"kind": "DeleteOptions", "apiVersion": "v1"}
            if grace_seconds is not None:
                body["gracePeriodSeconds"] = grace_seconds
            if uid:
                body["preconditions"] = {"uid": uid}
        try:
            return await self.request("DELETE", path, body=body)
        except ApiError as exc:
            if exc.status == 404 or (uid and exc.status == 409):
                return None
            raise

    async def watch(
        self,
        path: str,
        *,
        resource_version: str,
        timeout_seconds: int = 300,
        params: dict[str, str] | None = None,
    ) -> AsyncIterator[tuple[str, Obj]]:
        """Yield (type, object) from one watch stream; raise WatchExpired on 410."""
        query = dict(params or {})
        query.update(
            watch="true",
            resourceVersion=resource_version,
            timeoutSeconds=str(timeout_seconds),
            allowWatchBookmarks="true",
        )
        async with self.session.get(
            self.config.server + path,
            params=query,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=timeout_seconds + 30),
            server_hostname=self.config.server_name,
        ) as resp:
            if resp.status >= 400:
                raise _error(resp.status, await resp.text())
            async for line in resp.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                kind = event.get("type", "")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    code = int(obj.get("code", 500))
                    raise _error(code, json.dumps(obj))
                yield kind, obj


def _error(status: int, text: str) -> ApiError:
    reason, message = "", text
    try:
        st = json.loads(text)
        reason, message = st.get("reason", ""), st.get("message", text)
    except ValueError:
        pass
    cls = WatchExpired if status == 410 else ApiError
    return cls(status, message, reason)


Handler = Callable[[str, Obj], Awaitable[None]]


def key_of(obj: Obj) -> str:
    md = obj.get("metadata") or {}
    ns = md.get("namespace")
    return f"{ns}/{md.get('name')}" if ns else str(md.get("name"))


async def _deliver(handler: Handler, kind: str, obj: Obj) -> None:
    """Call the handler; its bugs are logged, never allowed to end the watch."""
    try:
        await handler(kind, obj)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("watch_handler_failed", kind=kind, object=key_of(obj))


async def list_watch(
    client: KubeClient,
    path: str,
    handler: Handler,
    *,
    synced: asyncio.Event | None = None,
    **params: str,
) -> None:
    """Keep ``handler`` told about every object at ``path`` until cancelled.

    Lists, replays the list as ADDED/MODIFIED (and DELETED for objects that vanished since the
    previous list), sets ``synced``, then watches from the list's resourceVersion; a 410 or a
    broken stream leads to a re-list. Events for one object arrive in order.
    """
    known: dict[str, Obj] = {}
    rv = ""
    backoff = 0.2
    while True:
        try:
            if not rv:
                listing = await client.list(path, **params)
                rv = str(listing.get("metadata", {}).get("resourceVersion", ""))
                fresh = {key_of(o): o for o in listing.get("items") or []}
                for k in list(known):
                    if k not in fresh:
                        await _deliver(handler, "DELETED", known.pop(k))
                for k, o in fresh.items():
                    await _deliver(handler, "MODIFIED" if k in known else "ADDED", o)
                    known[k] = o
                if synced is not None:
                    synced.set()
            async for kind, obj in client.watch(path, resource_version=rv, params=params):
                new_rv = obj.get("metadata", {}).get("resourceVersion")
                if new_rv:
                    rv = str(new_rv)
                if kind == "BOOKMARK":
                    continue
                k = key_of(obj)
                if kind == "DELETED":
                    known.pop(k, None)
                else:
                    known[k] = obj
                await _deliver(handler, kind, obj)
            backoff = 0.2
        except WatchExpired:
            rv = ""
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # connection, TLS, decoding: re-list after a pause
            log.warning("watch_failed", path=path, error=str(exc))
            rv = ""
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
