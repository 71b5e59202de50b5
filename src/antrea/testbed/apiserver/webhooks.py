"""Dynamic admission: calling the webhooks of ValidatingWebhookConfigurations and
MutatingWebhookConfigurations (admissionregistration.k8s.io/v1) the way kube-apiserver does.

For every create, update (incl. patch) and delete, the webhooks whose ``rules`` (operations,
apiGroups, apiVersions, resources with ``resource/subresource`` and ``*``, scope),
``namespaceSelector`` and ``objectSelector`` match are called with an ``AdmissionReview`` v1
over HTTPS: mutating webhooks one after the other (their JSONPatches applied in turn), then,
on the object as it would be stored (defaults, schema and built-in validation done),
validating webhooks concurrently. Nothing is stored unless every one admits it.

- ``clientConfig.url`` or ``clientConfig.service`` (namespace, name, path, port 443 by
  default): a Service is reached at its Endpoints' first address on the target port, with
  ``<name>.<namespace>.svc`` as the TLS server name; ``caBundle`` (PEM, base64 in JSON) is the
  only trusted CA when given.
- ``timeoutSeconds`` (default 10, at most 30) bounds the whole call.
- A refusal is answered with the webhook's status: code (at least 400, default 400), reason,
  and the message ``admission webhook "NAME" denied the request: MESSAGE``.
- A call that fails (connection, TLS, timeout, a response that is not an AdmissionReview v1
  for this uid, a webhook without ``v1`` in ``admissionReviewVersions``) refuses the request
  with 500 ``failed calling webhook`` under ``failurePolicy: Fail`` (the default) and is
  skipped under ``Ignore``.
- A dry-run request is refused (400) when a matching webhook's ``sideEffects`` is not
  ``None``/``NoneOnDryRun``.

How the server connects can be replaced (``dial``): the lab's API server lives in the host's
network namespace while the controller listens on a node address in another one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import ssl
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
import structlog

from antrea.errors import AntreaError
from antrea.k8s.labels import SelectorError, label_selector_from_dict
from antrea.testbed.apiserver import errors
from antrea.testbed.apiserver.auth import Identity
from antrea.testbed.apiserver.patch import PatchError, json_patch
from antrea.testbed.apiserver.resources import ResourceType
from antrea.testbed.apiserver.store import Store

log = structlog.get_logger(__name__)

JSON = dict[str, Any]
GROUP = "admissionregistration.k8s.io"
VALIDATING_KEY = (GROUP, "validatingwebhookconfigurations")
MUTATING_KEY = (GROUP, "mutatingwebhookconfigurations")
DEFAULT_TIMEOUT = 10
MAX_TIMEOUT = 30
MAX_RESPONSE = 3 * 1024 * 1024

# (host, port) -> connected (reader, writer) over TLS with ``ctx`` and ``server_hostname``.
Dialer = Callable[
    [str, int, ssl.SSLContext, str],
    Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
]


async def default_dial(
    host: str, port: int, ctx: ssl.SSLContext, server_hostname: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(host, port, ssl=ctx, server_hostname=server_hostname)


@dataclass(frozen=True, slots=True)
class Attributes:
    """One request, as admission sees it."""

    operation: str  # CREATE, UPDATE, DELETE
    rt: ResourceType
    subresource: str
    namespace: str
    name: str
    identity: Identity | None
    dry_run: bool


class CallError(AntreaError):
    pass


def _rule_matches(rule: JSON, attrs: Attributes) -> bool:
    ops = rule.get("operations") or []
    if "*" not in ops and attrs.operation not in ops:
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and attrs.rt.group not in groups:
        return False
    versions = rule.get("apiVersions") or []
    if "*" not in versions and attrs.rt.version not in versions:
        return False
    scope = rule.get("scope") or "*"
    if scope == "Cluster" and attrs.rt.namespaced:
        return False
    if scope == "Namespaced" and not attrs.rt.namespaced:
        return False
    res, sub = attrs.rt.resource, attrs.subresource
    for want in rule.get("resources") or []:
        # kube-apiserver's matcher: "*" is every resource but no subresource, "x/*" and
        # "*/*" include the resource itself as well as its subresources.
        w_res, _, w_sub = str(want).partition("/")
        if w_res in ("*", res) and w_sub in ("*", sub):
            return True
    return False


class Webhooks:
    def __init__(self, store: Store, dial: Dialer | None = None) -> None:
        self.store = store
        self.dial: Dialer = dial or default_dial

    # -- matching ---------------------------------------------------------------------------

    def configured(self) -> bool:
        return bool(self.store.list(VALIDATING_KEY) or self.store.list(MUTATING_KEY))

    def _selected(self, hook: JSON, attrs: Attributes, obj: JSON | None, old: JSON | None) -> bool:
        try:
            obj_sel = hook.get("objectSelector")
            if isinstance(obj_sel, dict) and obj_sel:
                selector = label_selector_from_dict(obj_sel)
                labels = [(o.get("metadata") or {}).get("labels") or {} for o in (obj, old) if o]
                if not any(selector.matches(lbl) for lbl in labels):
                    return False
            ns_sel = hook.get("namespaceSelector")
            if isinstance(ns_sel, dict) and ns_sel:
                if attrs.rt.namespaced:
                    ns = self.store.get(("", "namespaces"), "", attrs.namespace)
                    ns_labels = ((ns or {}).get("metadata") or {}).get("labels") or {}
                elif attrs.rt.key == ("", "namespaces"):
                    ns_labels = ((obj or old or {}).get("metadata") or {}).get("labels") or {}
                else:
                    return True
                return label_selector_from_dict(ns_sel).matches(ns_labels)
        except SelectorError:
            return False
        return True

    def matching(
        self, key: tuple[str, str], attrs: Attributes, obj: JSON | None, old: JSON | None
    ) -> list[JSON]:
        hooks: list[JSON] = []
        for config in sorted(self.store.list(key), key=lambda c: c["metadata"]["name"]):
            for hook in config.get("webhooks") or ():
                if not isinstance(hook, dict):
                    continue
                rules = [r for r in hook.get("rules") or () if isinstance(r, dict)]
                if any(_rule_matches(r, attrs) for r in rules) and self._selected(
                    hook, attrs, obj, old
                ):
                    hooks.append(hook)
        return hooks

    # -- admission --------------------------------------------------------------------------

    async def mutate(self, attrs: Attributes, obj: JSON, old: JSON | None) -> JSON:
        hooks = self.matching(MUTATING_KEY, attrs, obj, old)
        for hook in hooks:
            self._check_dry_run(hook, attrs)
            answer = await self._admit(hook, attrs, obj, old)
            if answer is None:
                continue
            patch = answer.get("patch")
            if patch:
                if answer.get("patchType") != "JSONPatch":
                    raise self._failed(
                        hook, "unsupported patchType " + str(answer.get("patchType"))
                    )
                try:
                    ops = orjson.loads(base64.b64decode(patch))
                    obj = json_patch(copy.deepcopy(obj), ops)
                except (ValueError, PatchError) as exc:
                    raise self._failed(hook, f"invalid patch: {exc}") from None
                if not isinstance(obj, dict):
                    raise self._failed(hook, "the patch does not leave an object")
        return obj

    async def validate(self, attrs: Attributes, obj: JSON | None, old: JSON | None) -> None:
        hooks = self.matching(VALIDATING_KEY, attrs, obj, old)
        for hook in hooks:
            self._check_dry_run(hook, attrs)
        if hooks:
            await asyncio.gather(*(self._admit(h, attrs, obj, old) for h in hooks))

    def _check_dry_run(self, hook: JSON, attrs: Attributes) -> None:
        if attrs.dry_run and hook.get("sideEffects") not in ("None", "NoneOnDryRun"):
            raise errors.bad_request(
                f'admission webhook "{hook.get("name")}" does not support dry run'
            )

    def _failed(self, hook: JSON, why: str) -> errors.APIError:
        return errors.internal(
            f'Internal error occurred: failed calling webhook "{hook.get("name")}": {why}'
        )

    async def _admit(
        self, hook: JSON, attrs: Attributes, obj: JSON | None, old: JSON | None
    ) -> JSON | None:
        """The webhook's response when it admits; raises when it refuses or fails (Fail)."""
        name = str(hook.get("name") or "")
        try:
            answer = await self._call(hook, attrs, obj, old)
        except CallError as exc:
            if hook.get("failurePolicy") == "Ignore":
                log.warning("webhook_failed_ignored", webhook=name, error=str(exc))
                return None
            log.warning("webhook_failed", webhook=name, error=str(exc))
            raise self._failed(hook, str(exc)) from None
        if answer.get("allowed") is True:
            return answer
        raise errors.APIError(_denied(name, answer.get("status")))

    async def _call(
        self, hook: JSON, attrs: Attributes, obj: JSON | None, old: JSON | None
    ) -> JSON:
        if "v1" not in (hook.get("admissionReviewVersions") or ()):
            raise CallError("webhook does not accept v1 AdmissionReview")
        timeout = hook.get("timeoutSeconds")
        if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 1:
            timeout = DEFAULT_TIMEOUT
        timeout = min(timeout, MAX_TIMEOUT)
        host, port, server_name, path = self._target(hook)
        ctx = ssl.create_default_context()
        ca = (hook.get("clientConfig") or {}).get("caBundle")
        if ca:
            try:
                ctx = ssl.create_default_context(cadata=base64.b64decode(ca).decode())
            except (ValueError, ssl.SSLError) as exc:
                raise CallError(f"invalid caBundle: {exc}") from None
        uid = str(uuid.uuid4())
        review = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": _request(uid, attrs, obj, old),
        }
        sep = "&" if "?" in path else "?"
        url_path = f"{path}{sep}timeout={timeout}s"
        where = f'Post "https://{server_name}:{port}{url_path}"'
        try:
            async with asyncio.timeout(timeout):
                status, body = await self._post(
                    host, port, ctx, server_name=server_name, path=url_path, review=review
                )
        except TimeoutError:
            raise CallError(f"failed to call webhook: {where}: context deadline exceeded") from None
        except (OSError, ssl.SSLError, ValueError, asyncio.IncompleteReadError) as exc:
            raise CallError(f"failed to call webhook: {where}: {exc}") from None
        if status != 200:
            raise CallError(f"received invalid webhook response: HTTP {status}: {body[:200]!r}")
        try:
            got = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise CallError(f"received invalid webhook response: {exc}") from None
        answer = got.get("response") if isinstance(got, dict) else None
        if (
            not isinstance(answer, dict)
            or got.get("apiVersion") != "admission.k8s.io/v1"
            or got.get("kind") != "AdmissionReview"
        ):
            raise CallError("received invalid webhook response: not an AdmissionReview v1")
        if answer.get("uid") != uid:
            raise CallError(f"expected response.uid={uid!r}, got {answer.get('uid')!r}")
        return answer

    def _target(self, hook: JSON) -> tuple[str, int, str, str]:
        """(connect host, port, TLS server name, request path)."""
        cc = hook.get("clientConfig") or {}
        url = cc.get("url")
        if url:
            parts = urlsplit(str(url))
            if parts.scheme != "https" or not parts.hostname:
                raise CallError(f"invalid webhook URL {url!r}")
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            return parts.hostname, parts.port or 443, parts.hostname, path
        svc = cc.get("service")
        if not isinstance(svc, dict):
            raise CallError("clientConfig has neither url nor service")
        ns, name = str(svc.get("namespace") or ""), str(svc.get("name") or "")
        port = svc.get("port") or 443
        path = str(svc.get("path") or "/")
        host, target = self._resolve(ns, name, int(port))
        return host, target, f"{name}.{ns}.svc", path

    def _resolve(self, ns: str, name: str, port: int) -> tuple[str, int]:
        service = self.store.get(("", "services"), ns, name)
        if service is None:
            raise CallError(f'service "{ns}/{name}" not found')
        sport = next(
            (
                p
                for p in (service.get("spec") or {}).get("ports") or ()
                if isinstance(p, dict) and p.get("port") == port
            ),
            None,
        )
        if sport is None:
            raise CallError(f'service "{ns}/{name}" has no port {port}')
        endpoints = self.store.get(("", "endpoints"), ns, name)
        for subset in (endpoints or {}).get("subsets") or ():
            addresses = subset.get("addresses") or ()
            ports = subset.get("ports") or ()
            chosen = None
            for p in ports:
                if p.get("name", "") == sport.get("name", "") or len(ports) == 1:
                    chosen = p
                    break
            if addresses and chosen is not None and chosen.get("port"):
                return str(addresses[0].get("ip")), int(chosen["port"])
        raise CallError(f'service "{ns}/{name}" has no ready endpoints')

    async def _post(
        self,
        host: str,
        port: int,
        ctx: ssl.SSLContext,
        *,
        server_name: str,
        path: str,
        review: JSON,
    ) -> tuple[int, bytes]:
        body = orjson.dumps(review)
        reader, writer = await self.dial(host, port, ctx, server_name)
        try:
            head = (
                f"POST {path} HTTP/1.1\r\nHost: {server_name}:{port}\r\n"
                "Content-Type: application/json\r\nAccept: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
            status_line = await reader.readline()
            parts = status_line.split(b" ", 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
                raise ValueError(f"malformed HTTP response {status_line[:80]!r}")
            status = int(parts[1])
            length: int | None = None
            chunked = False
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                key, _, value = line.decode("latin-1").partition(":")
                if key.strip().lower() == "content-length":
                    length = int(value.strip())
                elif key.strip().lower() == "transfer-encoding":
                    chunked = "chunked" in value.lower()
            if chunked:
                data = bytearray()
                while True:
                    size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        break
                    data += await reader.readexactly(size)
                    await reader.readexactly(2)
                    if len(data) > MAX_RESPONSE:
                        raise ValueError("response too large")
                return status, bytes(data)
            if length is not None:
                if length > MAX_RESPONSE:
                    raise ValueError("response too large")
                return status, await reader.readexactly(length)
            return status, await reader.read(MAX_RESPONSE)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _request(uid: str, attrs: Attributes, obj: JSON | None, old: JSON | None) -> JSON:
    rt = attrs.rt
    ident = attrs.identity
    user: JSON = {}
    if ident is not None:
        user = {"username": ident.user, "groups": list(ident.groups)}
        if ident.uid:
            user["uid"] = ident.uid
        if ident.extra:
            user["extra"] = {k: list(v) for k, v in ident.extra}
    kind = {"group": rt.group, "version": rt.version, "kind": rt.kind}
    resource = {"group": rt.group, "version": rt.version, "resource": rt.resource}
    req: JSON = {
        "uid": uid,
        "kind": kind,
        "resource": resource,
        "requestKind": kind,
        "requestResource": resource,
        "name": attrs.name,
        "operation": attrs.operation,
        "userInfo": user,
        "object": obj,
        "oldObject": old,
        "dryRun": attrs.dry_run,
        "options": {
            "CREATE": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
            "UPDATE": {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"},
            "DELETE": {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"},
        }.get(attrs.operation),
    }
    if attrs.subresource:
        req["subResource"] = attrs.subresource
        req["requestSubResource"] = attrs.subresource
    if rt.namespaced:
        req["namespace"] = attrs.namespace
    return req


def _denied(name: str, result: Any) -> JSON:
    """kube-apiserver's status for a refusal (webhook's status, message prefixed)."""
    status: JSON = dict(result) if isinstance(result, dict) else {}
    denied_by = f'admission webhook "{name}" denied the request'
    code = status.get("code")
    if not isinstance(code, int) or code < 400:
        code = 400
    message, reason = status.get("message"), status.get("reason")
    if message:
        text = f"{denied_by}: {message}"
    elif reason:
        text = f"{denied_by}: {reason}"
    else:
        text = f"{denied_by} without explanation"
    body = errors.status_body(
        code=code,
        reason=str(reason or ""),
        message=text,
        details=status.get("details") if isinstance(status.get("details"), dict) else None,
    )
    return body
