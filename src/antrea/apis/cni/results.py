"""Result conversion between the agent's 1.1.0 shape and the version the runtime asked for.

The agent always answers in the 1.1.0 shape; the runtime must get the shape of the
``cniVersion`` in its config, because libcni parses results strictly by that version. The rules
mirror libcni's converters:

- 0.3.0/0.3.1/0.4.0: ``ips[].version`` is ``"4"``/``"6"``; interfaces carry only name, mac and
  sandbox; routes only dst and gw; ``dns`` is always printed (Go prints the empty struct).
- 1.0.0: no ``ips[].version``; otherwise like 0.4.0, but an empty ``dns`` is left out.
- 1.1.0: adds interface ``mtu``/``socketPath``/``pciID`` and route ``mtu``/``advmss``/
  ``priority``/``table``/``scope``.

``prevResult`` travels the other way: whatever version the runtime cached it in, the agent gets
it in the 1.1.0 shape.
"""

from __future__ import annotations

from antrea.apis.cni.errors import INVALID_NETWORK_CONFIG, CniError
from antrea.apis.cni.versions import LATEST

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_IFACE_FIELDS_OLD = ("name", "mac", "sandbox")
_IFACE_FIELDS_11 = ("name", "mac", "mtu", "sandbox", "socketPath", "pciID")
_ROUTE_FIELDS_OLD = ("dst", "gw")
_ROUTE_FIELDS_11 = ("dst", "gw", "mtu", "advmss", "priority", "table", "scope")
_DNS_FIELDS = ("nameservers", "domain", "search", "options")


def _pick(obj: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {k: obj[k] for k in fields if k in obj and obj[k] not in (None, "")}


def _ip_version(address: str) -> str:
    return "6" if ":" in address else "4"


def _dns(result: dict[str, Any]) -> dict[str, Any]:
    dns = result.get("dns")
    if not isinstance(dns, dict):
        return {}
    return {k: dns[k] for k in _DNS_FIELDS if dns.get(k)}


def to_version(result: dict[str, Any], version: str) -> dict[str, Any]:
    """Render a 1.1.0-shaped ``result`` in the shape of spec ``version``."""
    legacy = version.startswith("0.")
    is_11 = version == "1.1.0"
    iface_fields = _IFACE_FIELDS_11 if is_11 else _IFACE_FIELDS_OLD
    route_fields = _ROUTE_FIELDS_11 if is_11 else _ROUTE_FIELDS_OLD
    out: dict[str, Any] = {"cniVersion": version}
    interfaces = [_pick(i, iface_fields) for i in result.get("interfaces") or ()]
    if interfaces:
        out["interfaces"] = interfaces
    ips = []
    for ip in result.get("ips") or ():
        entry: dict[str, Any] = {}
        if legacy:
            entry["version"] = _ip_version(ip["address"])
        entry.update(_pick(ip, ("address", "gateway")))
        if isinstance(ip.get("interface"), int):
            entry["interface"] = ip["interface"]
        ips.append(entry)
    if ips:
        out["ips"] = ips
    routes = [_pick(r, route_fields) for r in result.get("routes") or ()]
    if routes:
        out["routes"] = routes
    dns = _dns(result)
    if dns or legacy:
        out["dns"] = dns
    return out


def _list_of_objects(value: object, what: str, required: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise CniError(INVALID_NETWORK_CONFIG, f"invalid prevResult: {what} must be a list")
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get(required), str):
            raise CniError(
                INVALID_NETWORK_CONFIG,
                f"invalid prevResult: every {what} entry needs a string {required!r}",
            )
    return value


def to_latest(prev: object) -> dict[str, Any]:
    """Validate a ``prevResult`` of any supported version and return it in the 1.1.0 shape.

    Raises code 7 (invalid network config) when it is not a result at all.
    """
    if not isinstance(prev, dict):
        raise CniError(INVALID_NETWORK_CONFIG, "invalid prevResult: not a JSON object")
    interfaces = _list_of_objects(prev.get("interfaces"), "interfaces", "name")
    ips = _list_of_objects(prev.get("ips"), "ips", "address")
    routes = _list_of_objects(prev.get("routes"), "routes", "dst")
    out: dict[str, Any] = {"cniVersion": LATEST}
    if interfaces:
        out["interfaces"] = [dict(i) for i in interfaces]
    if ips:
        converted = []
        for ip in ips:
            entry = {k: v for k, v in ip.items() if k != "version"}
            index = entry.get("interface")
            if index is not None and (
                not isinstance(index, int)
                or isinstance(index, bool)
                or not 0 <= index < len(interfaces)
            ):
                raise CniError(
                    INVALID_NETWORK_CONFIG,
                    f"invalid prevResult: ips interface index {index!r} out of range",
                )
            converted.append(entry)
        out["ips"] = converted
    if routes:
        out["routes"] = [dict(r) for r in routes]
    dns = _dns(prev)
    if dns:
        out["dns"] = dns
    return out
