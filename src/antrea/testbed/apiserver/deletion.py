"""Deletion semantics: immediate removal, graceful pods, finalizers, namespaces, CRDs.

Kept apart from the request handlers because deletions also happen without a request: a pod's
grace period ends (a timer), a namespace empties, a CRD takes its custom resources with it, old
Events expire. Everything here is synchronous, so each step commits atomically.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import structlog

from antrea.testbed.apiserver import errors, strategy
from antrea.testbed.apiserver.resources import Registry, ResourceType
from antrea.testbed.apiserver.store import Store, name_of, namespace_of

log = structlog.get_logger(__name__)
# A deletionTimestamp at most ~100 years ahead (datetime ends at year 9999).
MAX_GRACE_TIMER = 100 * 365 * 86400

JSON = dict[str, Any]
NS_KEY = ("", "namespaces")
POD_KEY = ("", "pods")
CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")


class Deletions:
    def __init__(self, *, store: Store, registry: Registry) -> None:
        self.store = store
        self.registry = registry
        self._timers: dict[tuple[str, str, str], asyncio.TimerHandle] = {}

    def _rt(self, key: tuple[str, str]) -> ResourceType:
        rt = self.registry.any_version(*key)
        if rt is None:
            raise errors.internal(f"unknown resource {key}")
        return rt

    def timer_pending(self, rt: ResourceType, uid: str) -> bool:
        """Whether a graceful deletion of this object is still counting down."""
        return (rt.key[0], rt.key[1], uid) in self._timers

    def close(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    def expire_events(self, ttl: float) -> int:
        """Remove core Events older than ``ttl`` seconds (kube-apiserver's ``--event-ttl``)."""
        key = ("", "events")
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=ttl)
        rt = self._rt(key)
        expired = 0
        for event in self.store.list(key):
            stamp = event.get("lastTimestamp") or event["metadata"].get("creationTimestamp")
            try:
                when = strategy.parse_time(str(stamp))
            except ValueError:
                continue
            if when < cutoff:
                self.remove(rt, event)
                expired += 1
        return expired

    def delete_object(self, rt: ResourceType, obj: JSON, requested_grace: int | None) -> JSON:
        """Delete now, or mark for deletion (graceful pods, finalizers); returns the last state."""
        if rt.key == NS_KEY:
            return self._delete_namespace(rt, obj)
        meta = obj["metadata"]
        grace = strategy.grace_period(rt, obj, requested_grace)
        finalizers = meta.get("finalizers") or []
        if grace == 0 and not finalizers:
            return self.remove(rt, obj)
        if meta.get("deletionTimestamp"):
            current = meta.get("deletionGracePeriodSeconds")
            if not (isinstance(current, int) and grace < current):
                return obj
        new = dict(obj)
        new["metadata"] = dict(meta)
        # Any int64 grace period is accepted; the timer saturates at MAX_GRACE_TIMER.
        when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=min(grace, MAX_GRACE_TIMER))
        new["metadata"]["deletionTimestamp"] = strategy.format_time(when)
        new["metadata"]["deletionGracePeriodSeconds"] = grace
        self.store.put(rt.key, new, old=obj)
        if grace > 0:
            self.arm_pod_timer(new)
        return new

    def arm_pod_timer(self, pod: JSON) -> None:
        meta = pod["metadata"]
        key = ("", "pods", meta["uid"])
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        try:
            when = strategy.parse_time(meta["deletionTimestamp"])
        except (KeyError, ValueError):
            return
        delay = max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(
            delay, self._expire_pod, namespace_of(pod), name_of(pod), meta["uid"]
        )

    def _expire_pod(self, ns: str, name: str, uid: str) -> None:
        self._timers.pop(("", "pods", uid), None)
        pod = self.store.get(POD_KEY, ns, name)
        if pod is None or pod["metadata"].get("uid") != uid:
            return
        if pod["metadata"].get("finalizers"):
            return
        log.info("apiserver_pod_grace_expired", namespace=ns, pod=name)
        self.remove(self._rt(POD_KEY), pod)

    def remove(self, rt: ResourceType, obj: JSON) -> JSON:
        final = dict(obj)
        final["metadata"] = dict(obj["metadata"])
        self.store.remove(rt.key, final)
        uid = final["metadata"].get("uid", "")
        timer = self._timers.pop((rt.key[0], rt.key[1], uid), None)
        if timer is not None:
            timer.cancel()
        if rt.key == CRD_KEY:
            self._crd_removed(final)
        ns = namespace_of(final)
        if rt.namespaced and ns:
            ns_obj = self.store.get(NS_KEY, "", ns)
            if ns_obj is not None and ns_obj["metadata"].get("deletionTimestamp"):
                self._finalize_namespace_if_empty(ns_obj)
        return final

    def _crd_removed(self, crd_obj: JSON) -> None:
        spec = crd_obj.get("spec") or {}
        key = (spec.get("group", ""), (spec.get("names") or {}).get("plural", ""))
        rt = self.registry.any_version(*key)
        if rt is not None:
            for obj in self.store.list(key):
                final = dict(obj)
                final["metadata"] = dict(obj["metadata"])
                self.store.remove(key, final)
        self.store.close_watchers(key)
        self.store.drop_resource(key)
        self.registry.unregister_crd(crd_obj["metadata"]["name"])

    def _delete_namespace(self, rt: ResourceType, ns_obj: JSON) -> JSON:
        name = name_of(ns_obj)
        if not ns_obj["metadata"].get("deletionTimestamp"):
            new = dict(ns_obj)
            new["metadata"] = {
                **ns_obj["metadata"],
                "deletionTimestamp": strategy.now_rfc3339(),
                "deletionGracePeriodSeconds": 0,
            }
            new["status"] = {**(ns_obj.get("status") or {}), "phase": "Terminating"}
            self.store.put(NS_KEY, new, old=ns_obj)
            ns_obj = new
        for key in list(self.store.resource_keys()):
            content_rt = self.registry.any_version(*key)
            if content_rt is None or not content_rt.namespaced:
                continue
            for obj in self.store.list(key, name):
                current = self.store.get(key, name, name_of(obj))
                if current is not None:
                    self.delete_object(content_rt, current, None)
        current_ns = self.store.get(NS_KEY, "", name)
        if current_ns is None:
            return ns_obj
        return self._finalize_namespace_if_empty(current_ns)

    def _finalize_namespace_if_empty(self, ns_obj: JSON) -> JSON:
        name = name_of(ns_obj)
        for key in list(self.store.resource_keys()):
            if key != NS_KEY and self.store.count(key, name):
                return ns_obj
        return self.remove(self._rt(NS_KEY), ns_obj)
