"""Settings shared by every test directory.

Hypothesis: no per-example deadline and no "too slow" health check. CI and the shared development
machines are loaded (labs, OVS, compilers), and speed is measured in `benchmarks/`, never asserted
by a test's wall clock.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "antrea",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("antrea")
