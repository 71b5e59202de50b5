"""Runtime collectors every role's /metrics carries: process (CPU, memory, file descriptors,
start time: ``process_*``), Python (``python_info``) and garbage collector (``python_gc_*``)
series, as Prometheus' Go clients give every Go binary its ``process_*`` and ``go_*``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector


def add_runtime_collectors(registry: CollectorRegistry) -> None:
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
