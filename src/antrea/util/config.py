"""What both roles' configuration files share: YAML loading, the error, unknown-key warnings.

Each role has one typed schema (`antrea.agent.config.AgentConfig`,
`antrea.controller.config.ControllerConfig`) with Antrea's key names. A key neither schema
knows is not an error (an upgrade or a typo must not stop pod networking) but it is reported:
one structured ``config_unknown_keys`` warning naming the role and the keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import structlog
import yaml

from antrea.errors import AntreaError

log = structlog.get_logger(__name__)


class ConfigError(AntreaError, ValueError):
    """The configuration file is unreadable or holds an invalid value."""


def read_mapping(path: str | Path | None) -> dict[str, Any]:
    """The YAML mapping at `path` (no path, or an empty file: ``{}``)."""
    if path is None or path == "":
        return {}
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def read_with_overrides(path: str | Path | None, overrides: str | Path | None) -> dict[str, Any]:
    """The mapping at ``path`` with the keys of the one at ``overrides`` (if that file exists)
    put over it; ``featureGates`` is merged gate by gate.

    ``overrides`` is where deploy/antrea.yml mounts the optional ConfigMap
    ``antrea-config-overrides``: a cluster's own settings (datapath, API server address, ...)
    kept apart from the manifest, which is then applied unchanged. No such ConfigMap: no file.
    """
    data = read_mapping(path)
    if overrides is None or overrides == "" or not Path(overrides).exists():
        return data
    extra = read_mapping(overrides)
    gates = extra.get("featureGates")
    if isinstance(gates, dict) and isinstance(data.get("featureGates"), dict):
        extra = {**extra, "featureGates": {**data["featureGates"], **gates}}
    return {**data, **extra}


def warn_unknown_keys(
    data: Mapping[str, Any], known: Iterable[str], *, role: str, section: str = ""
) -> list[str]:
    """Log one warning listing the keys of `data` outside `known`; return them (sorted)."""
    unknown = sorted(str(k) for k in set(data) - set(known))
    if unknown:
        log.warning("config_unknown_keys", role=role, section=section or None, keys=unknown)
    return unknown


def as_bool(name: str, value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "on")
    return bool(value)


def as_int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{name}: expected an integer, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: expected an integer, got {value!r}") from exc


def as_float(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: expected a number, got {value!r}") from exc


def as_str(name: str, value: Any) -> str:
    return "" if value is None else str(value)
