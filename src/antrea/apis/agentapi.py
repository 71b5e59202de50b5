"""The agent's local API, what antctl on a node reads: its default port and its paths.

Served by `antrea.agent.apiserver` (and the policy routes of `antrea.agent.networkpolicy.api`)
on ``127.0.0.1:<apiPort>``; read by `antrea.antctl` (``agent_cmds``, ``ops_cmds``,
``supportbundle``, ``featuregates``). Policies and groups come in the views of
`antrea.apis.controlplane.views`.
"""

from __future__ import annotations

DEFAULT_PORT = 10350

CONFIGMAP = "antrea-config"
"""The deployment's ConfigMap (``kube-system``) that holds the agent's configuration file."""
CONFIGMAP_KEY = "antrea-agent.conf"

PODINTERFACES = "/podinterfaces"
AGENTINFO = "/agentinfo"
OVSFLOWS = "/ovsflows"
METRICS = "/metrics"
HEALTHZ = "/healthz"
LOGLEVEL = "/loglevel"
CONFIG = "/config"
DEBUG_TASKS = "/debug/tasks"
NETWORKPOLICIES = "/networkpolicies"
APPLIEDTOGROUPS = "/appliedtogroups"
ADDRESSGROUPS = "/addressgroups"
NETWORKPOLICYFLOWS = "/networkpolicyflows"
OVSTRACING = "/ovstracing"
