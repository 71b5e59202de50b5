"""One error tree for Kubernetes clients: statuses map to the right class; all are AntreaErrors."""

from __future__ import annotations

import json

import pytest

from antrea.errors import AntreaError
from antrea.k8s.errors import Conflict, KubeconfigError, KubeError, WatchExpired, status_error


def test_status_error_maps_statuses_to_classes_and_reads_the_status_object() -> None:
    body = json.dumps(
        {"kind": "Status", "message": 'pods "p" already exists', "reason": "AlreadyExists"}
    )
    err = status_error(409, body.encode())
    assert type(err) is Conflict
    assert (err.status, err.reason, err.message) == (
        409,
        "AlreadyExists",
        'pods "p" already exists',
    )
    gone = status_error(410, b'{"message": "too old resource version: 5 (9)"}')
    assert type(gone) is WatchExpired and gone.status == 410 and "too old" in gone.message
    plain = status_error(503, "upstream down")
    assert (
        type(plain) is KubeError
        and plain.message == "upstream down"
        and str(plain) == "503: upstream down"
    )
    assert type(status_error(403, b"[1, 2]")) is KubeError  # JSON but not a Status


@pytest.mark.parametrize("cls", [KubeError, Conflict, WatchExpired, KubeconfigError])
def test_every_kubernetes_error_is_an_antrea_error(cls: type[Exception]) -> None:
    assert issubclass(cls, AntreaError)
    assert issubclass(KubeconfigError, ValueError)  # callers also catch it as a ValueError


def test_watch_expired_defaults_to_410() -> None:
    assert WatchExpired().status == 410
    assert isinstance(WatchExpired(), KubeError)
