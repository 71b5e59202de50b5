"""The names both ends of the control plane agree on: paths, messages and Kubernetes objects.

The controller serves these paths and publishes these objects; the agent and antctl read them.
Each is defined here once, so the two sides cannot drift apart
(docs/design/controlplane-protocol.md).
"""

from __future__ import annotations

GROUP_VERSION = "controlplane.antrea.io/v1beta2"
API_PORT = 10349
"""The controller's HTTPS port (``controllerAPIPort``), published in its Endpoints."""
PATH = f"/apis/{GROUP_VERSION}"
"""The control-plane API group on the controller's HTTPS server."""
WATCH_PATH = f"{PATH}/watch"
"""``GET ?nodeName=N``: the node's msgpack watch stream."""
STATUS_PATH = f"{PATH}/networkpolicies/status"
"""``POST``: one node's realization status (msgpack)."""
STATUSES_PATH = f"{PATH}/networkpolicies/statuses"
"""``POST``: one node's realization statuses of several policies in one body (msgpack)."""
ENDPOINT_QUERIES_PATH = f"{PATH}/endpointqueries"
EVALUATION_PATH = f"{PATH}/networkpolicyevaluation"
SYSTEM_PATH = "/apis/system.antrea.io/v1beta1"
STREAM_CONTENT_TYPE = "application/vnd.antrea.controlplane.v1+msgpack"
"""The watch stream's media type in wire version 1 (every client understands it)."""
STREAM_CONTENT_TYPE_V2 = "application/vnd.antrea.controlplane.v2+msgpack"
"""Wire version 2 (positional rules, codec.rule_array): served to a client whose ``Accept``
names it, version 1 otherwise; an agent accepts both, and a controller that does not know
version 2 ignores the header."""
STREAM_CONTENT_TYPES = {1: STREAM_CONTENT_TYPE, 2: STREAM_CONTENT_TYPE_V2}

HEARTBEAT_MESSAGE = "heartbeat"
"""``BOOKMARK`` frames with this message only keep the connection alive; clients drop them."""

NAMESPACE = "kube-system"
"""Where the objects below live (the default; both roles take it from their configuration)."""
ENDPOINTS_NAME = "antrea"
"""Endpoints ``<namespace>/antrea``: the leader's address, port named ``https``."""
ENDPOINTS_PORT_NAME = "https"
SERVICE_PROXY_SEGMENT = f"https:{ENDPOINTS_NAME}:{ENDPOINTS_PORT_NAME}"
"""Service ``<namespace>/antrea`` as a ``services/proxy`` name (antctl ``--via-apiserver``)."""
PROXIED_AUTHORIZATION_HEADER = "X-Antrea-Authorization"
"""A caller's ``Bearer <token>`` for the controller when the request goes through the Kubernetes
API's proxy, which authenticates the caller and does not forward its ``Authorization``."""
CA_CONFIGMAP = "antrea-ca"
"""ConfigMap ``<namespace>/antrea-ca``: the CA that signs the controller's serving certificate."""
CA_CONFIGMAP_KEY = "ca.crt"
