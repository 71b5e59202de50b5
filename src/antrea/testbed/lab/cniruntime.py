"""Run CNI plugins the way a container runtime (libcni) does.

- Network config: the lexicographically first ``*.conflist``/``*.conf``/``*.json`` in the node's
  conf dir that parses (a ``.conf`` is one plugin, wrapped into a list).
- Each plugin gets the ``CNI_*`` environment and, on stdin, its own config with the network's
  ``name`` and ``cniVersion`` and, when there is one, ``prevResult`` (ADD: the previous plugin's
  result; DEL/CHECK: the cached result of the ADD).
- ADD runs the list in order, DEL in reverse; the ADD result is cached (libcni's ``cniCacheV1``
  layout, ``<cache>/results/<network>-<container>-<ifname>``) together with the exact config
  bytes, so DEL and CHECK use the config the pod was set up with even if the conf dir changed.
- Plugins run inside the node's network namespace (``ip netns exec``), because that is where a
  node's runtime lives; ``CNI_NETNS`` is the pod namespace's path.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from antrea.errors import AntreaError
from antrea.util.atomicfile import write_atomic

log = structlog.get_logger(__name__)

CONF_SUFFIXES = (".conflist", ".conf", ".json")
VERSIONS_WITH_PREV_RESULT_ON_DEL = ("0.4.0", "1.0.0", "1.1.0")


class CniError(AntreaError):
    """A plugin failed; carries the CNI error object when the plugin printed one."""

    def __init__(
        self, plugin: str, command: str, *, code: int, msg: str, details: str = ""
    ) -> None:
        super().__init__(
            f"CNI {command} via {plugin} failed (code {code}): {msg} {details}".strip()
        )
        self.plugin = plugin
        self.command = command
        self.code = code
        self.msg = msg
        self.details = details


class NoNetworkConfig(AntreaError):
    """No usable network config in the conf dir: the node network is not ready."""


@dataclass(slots=True)
class NetworkConfig:
    name: str
    cni_version: str
    plugins: list[dict[str, Any]]
    raw: bytes
    source: str

    @classmethod
    def parse(cls, raw: bytes, source: str) -> NetworkConfig:
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise ValueError("network config is not a JSON object")
        if "plugins" not in doc:  # a single-plugin .conf
            doc = {
                "cniVersion": doc.get("cniVersion", "0.3.1"),
                "name": doc["name"],
                "plugins": [doc],
            }
            raw = json.dumps(doc).encode()
        plugins = doc["plugins"]
        if not plugins or not all(isinstance(p, dict) and p.get("type") for p in plugins):
            raise ValueError("network config has no plugins, or a plugin without type")
        return cls(
            name=str(doc["name"]),
            cni_version=str(doc.get("cniVersion", "0.3.1")),
            plugins=plugins,
            raw=raw,
            source=source,
        )


def load_network(conf_dir: Path) -> NetworkConfig:
    """The first parsable network config file in ``conf_dir`` (lexicographic order)."""
    if conf_dir.is_dir():
        for path in sorted(conf_dir.iterdir()):
            if path.suffix not in CONF_SUFFIXES or not path.is_file():
                continue
            try:
                return NetworkConfig.parse(path.read_bytes(), str(path))
            except (ValueError, KeyError, OSError) as exc:
                log.warning("cni_config_skipped", path=str(path), error=str(exc))
    raise NoNetworkConfig(f"no CNI network config in {conf_dir}")


@dataclass(slots=True)
class Attachment:
    container_id: str
    netns: str
    ifname: str
    args: list[tuple[str, str]]

    @property
    def cni_args(self) -> str:
        return ";".join(f"{k}={v}" for k, v in self.args)


class CniRuntime:
    """The CNI side of one lab node's container runtime."""

    def __init__(
        self, *, node_netns: str | None, conf_dir: Path, bin_dirs: list[Path], cache_dir: Path
    ) -> None:
        self.node_netns = node_netns
        self.conf_dir = conf_dir
        self.bin_dirs = bin_dirs
        self.cache_dir = cache_dir

    def load_network_ok(self) -> NetworkConfig:
        """The node's network config; raises NoNetworkConfig while the node network is not ready."""
        return load_network(self.conf_dir)

    def _cache_path(self, network: str, att: Attachment) -> Path:
        return self.cache_dir / "results" / f"{network}-{att.container_id}-{att.ifname}"

    def find_cached(self, att: Attachment) -> dict[str, Any] | None:
        results = self.cache_dir / "results"
        if not results.is_dir():
            return None
        suffix = f"-{att.container_id}-{att.ifname}"
        for p in results.iterdir():
            if p.name.endswith(suffix):
                cached: dict[str, Any] = json.loads(p.read_text())
                return cached
        return None

    async def add(self, att: Attachment) -> dict[str, Any]:
        net = load_network(self.conf_dir)
        prev: dict[str, Any] | None = None
        done: list[dict[str, Any]] = []
        try:
            for plugin in net.plugins:
                prev = await self._exec(net, plugin, "ADD", att, prev)
                done.append(plugin)
        except Exception:
            # Like a runtime whose sandbox failed: best-effort DEL of what was set up.
            for plugin in reversed(done):
                try:
                    await self._exec(net, plugin, "DEL", att, prev)
                except CniError as exc:
                    log.warning("cni_rollback_failed", error=str(exc))
            raise
        result = prev or {}
        self._write_cache(net, att, result)
        return result

    async def delete(self, att: Attachment) -> None:
        cached = self.find_cached(att)
        if cached is not None:
            net = NetworkConfig.parse(base64.b64decode(cached["config"]), "cache")
            prev = cached.get("result")
        else:
            try:
                net = load_network(self.conf_dir)
            except NoNetworkConfig:
                return
            prev = None
        for plugin in reversed(net.plugins):
            await self._exec(net, plugin, "DEL", att, prev)
        self._cache_path(net.name, att).unlink(missing_ok=True)

    async def check(self, att: Attachment) -> None:
        cached = self.find_cached(att)
        if cached is None:
            raise CniError("-", "CHECK", code=999, msg="no cached result for this attachment")
        net = NetworkConfig.parse(base64.b64decode(cached["config"]), "cache")
        if net.cni_version not in VERSIONS_WITH_PREV_RESULT_ON_DEL:
            raise CniError(
                "-", "CHECK", code=1, msg=f"CHECK needs cniVersion >= 0.4.0, not {net.cni_version}"
            )
        for plugin in net.plugins:
            await self._exec(net, plugin, "CHECK", att, cached.get("result"))

    def _write_cache(self, net: NetworkConfig, att: Attachment, result: dict[str, Any]) -> None:
        path = self._cache_path(net.name, att)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "kind": "cniCacheV1",
            "containerId": att.container_id,
            "config": base64.b64encode(net.raw).decode(),
            "ifName": att.ifname,
            "networkName": net.name,
            "netns": att.netns,
            "cniArgs": [list(a) for a in att.args],
            "result": result,
        }
        write_atomic(path, json.dumps(doc))

    def _find_plugin(self, kind: str) -> Path:
        for d in self.bin_dirs:
            p = d / kind
            if p.is_file() and os.access(p, os.X_OK):
                return p
        raise CniError(kind, "FIND", code=999, msg=f"plugin {kind!r} not found in {self.bin_dirs}")

    async def _exec(
        self,
        net: NetworkConfig,
        plugin: dict[str, Any],
        command: str,
        att: Attachment,
        prev: dict[str, Any] | None,
    ) -> dict[str, Any]:
        kind = str(plugin["type"])
        binary = self._find_plugin(kind)
        conf = dict(plugin)
        conf["name"] = net.name
        conf["cniVersion"] = net.cni_version
        conf.pop("prevResult", None)
        if prev is not None and (
            command == "ADD" or net.cni_version in VERSIONS_WITH_PREV_RESULT_ON_DEL
        ):
            conf["prevResult"] = prev
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": att.container_id,
            "CNI_NETNS": att.netns,
            "CNI_IFNAME": att.ifname,
            "CNI_ARGS": att.cni_args,
            "CNI_PATH": ":".join(str(d) for d in self.bin_dirs),
        }
        prefix = ["ip", "netns", "exec", self.node_netns] if self.node_netns else []
        proc = await asyncio.create_subprocess_exec(
            *prefix, str(binary),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )  # fmt: skip
        out, err = await proc.communicate(json.dumps(conf).encode())
        if proc.returncode != 0:
            try:
                doc = json.loads(out)
                raise CniError(
                    kind, command, code=int(doc.get("code", 999)), msg=str(doc.get("msg", "")),
                    details=str(doc.get("details", "")) or err.decode(errors="replace").strip(),
                )  # fmt: skip
            except (ValueError, AttributeError):
                raise CniError(
                    kind, command, code=999, msg=f"exit {proc.returncode}",
                    details=(out + err).decode(errors="replace").strip(),
                ) from None  # fmt: skip
        log.debug("cni_plugin_ran", plugin=kind, command=command, container=att.container_id[:12])
        if command != "ADD" or not out.strip():
            return prev or {}
        result: dict[str, Any] = json.loads(out)
        return result


def reference_conflist(*, node_pod_cidr: str, ipam_dir: Path, mtu: int = 1500) -> dict[str, Any]:
    """The node network for ``--cni reference``: Debian's bridge + host-local plugins.

    host-local keeps its allocations under the lab (``dataDir``), not in /var/lib/cni, so a lab
    leaves nothing behind and nodes never share state.
    """
    return {
        "cniVersion": "1.0.0",
        "name": "lab-bridge",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": False,
                "mtu": mtu,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(ipam_dir),
                    "ranges": [[{"subnet": node_pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            }
        ],
    }


def first_ipv4(result: dict[str, Any]) -> str | None:
    """The pod's IPv4 address from a CNI result (any version that has ``ips``/``ip4``)."""
    for ip in result.get("ips") or []:
        addr = str(ip.get("address", ""))
        if ip.get("version", "4") == "4" and "." in addr:
            return addr.split("/", maxsplit=1)[0]
    ip4 = result.get("ip4")
    if isinstance(ip4, dict) and ip4.get("ip"):
        return str(ip4["ip"]).split("/")[0]
    return None
