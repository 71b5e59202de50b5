"""Installing the plugin on a node: the executable in the CNI bin dir, the conflist in the conf dir.

This is what Antrea's ``install-cni`` init container does. The executable is the static C shim
(``shim/antrea-cni.c``, built by ``bin/build-cni``): it needs nothing on the host, and the copy
gets the agent's socket baked in as its default (used when the config names none it can use).
Where the built shim is looked for: ``$ANTREA_CNI_SHIM``, then ``shim/antrea-cni`` in the
``antrea.cni`` package (``bin/setup`` builds it there), then
``<sys.prefix>/lib/antrea/antrea-cni`` (the image). In a source checkout with ``musl-gcc`` a
missing shim is built on first use.

``install_python_plugin`` still writes the Python ``antrea-cni`` as a launcher that runs the
current interpreter in isolated mode without ``site`` (``-I -S``), tied to this installation.

The conflist mirrors Antrea's shape (``antrea`` with ``ipam: host-local``, then ``portmap`` and
``bandwidth``), but a chained plugin is only listed when its executable is in the bin dir, since
a runtime fails every ADD whose chain names a missing plugin.
"""

from __future__ import annotations

import contextlib
import json
import os
import py_compile
import subprocess
import sys
from pathlib import Path

import antrea
from antrea.apis.cni.versions import SUPPORTED_VERSIONS, parse
from antrea.util.atomicfile import write_atomic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CONFLIST_NAME = "10-antrea.conflist"
SHIM_NAME = "antrea-cni"
SHIM_ENV = "ANTREA_CNI_SHIM"
# Where bin/setup builds the shim: beside its source, in the `antrea.cni` package.
SHIM_DIR = Path(antrea.__file__).resolve().parent / "cni" / "shim"
# The shim's patchable default socket: this marker, then a NUL-terminated path (antrea-cni.c).
SOCKET_SLOT_MARKER = b"@@ANTREA-CNI-DEFAULT-SOCKET@@"
SOCKET_SLOT_BYTES = 108
NETWORK_NAME = "antrea"
# Chained after antrea, as in Antrea's conflist: (type, capabilities).
CHAINED_PLUGINS: tuple[tuple[str, dict[str, bool]], ...] = (
    ("portmap", {"portMappings": True}),
    ("bandwidth", {"bandwidth": True}),
)
# Every libcni since 1.0 parses results up to this version; newer ones go in ``cniVersions``.
_BROADLY_UNDERSTOOD = "1.0.0"


def package_root() -> Path:
    """The directory that holds the ``antrea`` package (goes on the launcher's sys.path)."""
    return Path(antrea.__file__).resolve().parent.parent


def launcher_source(*, python: str, root: Path) -> str:
    return (
        f"#!{python} -IS\n"
        "# antrea-cni launcher written by the antrea agent: runs the stdlib-only plugin.\n"
        "import sys\n"
        f"sys.path.insert(0, {str(root)!r})\n"
        "from antrea.cni.plugin import main\n"
        "sys.exit(main())\n"
    )


def _precompile(root: Path) -> None:
    """Byte-compile the modules the plugin imports, so no run ever pays for compiling them."""
    files = [
        root / "antrea" / "__init__.py",
        root / "antrea" / "apis" / "__init__.py",
        *sorted((root / "antrea" / "apis" / "cni").glob("*.py")),
        *sorted((root / "antrea" / "cni").glob("*.py")),
    ]
    for file in files:
        with contextlib.suppress(OSError, py_compile.PyCompileError):
            py_compile.compile(str(file), doraise=True)


def shim_candidates() -> list[Path]:
    """Where the built C executable may be, in order."""
    out = []
    if os.environ.get(SHIM_ENV):
        out.append(Path(os.environ[SHIM_ENV]))
    out.append(SHIM_DIR / SHIM_NAME)
    out.append(Path(sys.prefix) / "lib" / "antrea" / SHIM_NAME)
    return out


def _build_in_checkout() -> tuple[Path | None, str]:
    """In a source checkout (bin/build-cni beside src/), build the shim into the package."""
    script = package_root().parent / "bin" / "build-cni"
    if not script.is_file():
        return None, "not a source checkout"
    out_dir = SHIM_DIR
    proc = subprocess.run(
        ["bash", str(script), str(out_dir)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        return None, proc.stderr.strip()[-500:]
    return out_dir / SHIM_NAME, ""


def find_shim() -> Path:
    """The built C executable; raises FileNotFoundError naming where it was looked for."""
    candidates = shim_candidates()
    for path in candidates:
        if os.access(path, os.X_OK):
            return path
    built, why = (None, f"${SHIM_ENV} is set") if os.environ.get(SHIM_ENV) else _build_in_checkout()
    if built is not None:
        return built
    where = ", ".join(str(p) for p in candidates)
    raise FileNotFoundError(
        f"antrea-cni executable not found (looked in {where}; building it: {why}); "
        "run bin/build-cni"
    )


def with_default_socket(image: bytes, socket: str) -> bytes:
    """The shim's bytes with ``socket`` as the default it connects to."""
    start = image.find(SOCKET_SLOT_MARKER)
    if start < 0 or image.find(SOCKET_SLOT_MARKER, start + 1) >= 0:
        raise ValueError("not an antrea-cni shim: no (or more than one) default socket slot")
    path = socket.encode()
    if not path or len(path) >= SOCKET_SLOT_BYTES or b"\0" in path:
        raise ValueError(f"socket path {socket!r} does not fit the shim's slot")
    at = start + len(SOCKET_SLOT_MARKER)
    slot = path + b"\0" * (SOCKET_SLOT_BYTES - len(path))
    return image[:at] + slot + image[at + SOCKET_SLOT_BYTES :]


def install_plugin(
    bin_dir: Path,
    name: str = "antrea",
    *,
    socket: str | None = None,
    shim: Path | None = None,
) -> Path:
    """Copy the C executable to ``bin_dir/name`` atomically and return its path.

    Args:
        bin_dir: the runtime's CNI bin dir (``/opt/cni/bin`` on a node); created if missing.
        name: the executable name, i.e. the ``type`` in the conflist.
        socket: the agent's socket, baked in as the default (else /var/run/antrea/cni.sock).
        shim: the built executable (default: `find_shim`).
    """
    bin_dir = Path(bin_dir)
    bin_dir.mkdir(parents=True, exist_ok=True)
    image = (shim or find_shim()).read_bytes()
    if socket:
        image = with_default_socket(image, socket)
    target = bin_dir / name
    write_atomic(target, image, mode=0o755, fsync=True)
    return target


def install_python_plugin(
    bin_dir: Path, name: str = "antrea", *, python: str | None = None
) -> Path:
    """Write the Python ``antrea-cni`` as ``bin_dir/name`` (a launcher; needs this Python).

    Args:
        bin_dir: where to put it; created if missing.
        name: the executable name.
        python: interpreter for the shebang; defaults to the running one.
    """
    bin_dir = Path(bin_dir)
    bin_dir.mkdir(parents=True, exist_ok=True)
    root = package_root()
    _precompile(root)
    target = bin_dir / name
    source = launcher_source(python=python or sys.executable, root=root)
    write_atomic(target, source, mode=0o755, fsync=True)
    return target


def plugin_versions(executable: Path, *, timeout: float = 5.0) -> tuple[str, ...]:
    """Ask a CNI plugin which spec versions it supports (``CNI_COMMAND=VERSION``).

    Returns ``()`` when it does not answer like a CNI plugin.
    """
    try:
        proc = subprocess.run(
            [str(executable)],
            input=json.dumps({"cniVersion": SUPPORTED_VERSIONS[-1]}).encode(),
            env={"CNI_COMMAND": "VERSION"},
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        info = json.loads(proc.stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return ()
    versions = info.get("supportedVersions") if isinstance(info, dict) else None
    if proc.returncode != 0 or not isinstance(versions, list):
        return ()
    return tuple(v for v in versions if isinstance(v, str))


def build_conflist(
    *,
    mtu: int,
    socket: str,
    plugin_type: str = "antrea",
    chained: dict[str, tuple[str, ...]] | None = None,
    cni_version: str | None = None,
) -> dict[str, Any]:
    """The conflist document.

    Args:
        mtu: pod MTU the agent uses; written as ``mtu`` when > 0 (0 = agent decides).
        socket: the agent's CNI socket, written as ``cniSocket``.
        plugin_type: our executable's name.
        chained: chained plugin type -> the versions it supports (from ``plugin_versions``);
            only types listed in CHAINED_PLUGINS are used, in that order.
        cni_version: force ``cniVersion`` (default: the highest version every plugin in the
            chain supports, capped at 1.0.0 for old runtimes; newer ones are offered to
            runtimes that understand ``cniVersions``).
    """
    chained = chained or {}
    common = set(SUPPORTED_VERSIONS)
    plugins: list[dict[str, Any]] = []
    antrea_conf: dict[str, Any] = {"type": plugin_type, "ipam": {"type": "host-local"}}
    if mtu > 0:
        antrea_conf["mtu"] = mtu
    antrea_conf["cniSocket"] = socket
    plugins.append(antrea_conf)
    for chained_type, capabilities in CHAINED_PLUGINS:
        supported = chained.get(chained_type)
        if not supported or not common & set(supported):
            continue
        common &= set(supported)
        plugins.append({"type": chained_type, "capabilities": dict(capabilities)})
    ordered = sorted(common, key=parse)
    if cni_version is None:
        capped = [v for v in ordered if parse(v) <= parse(_BROADLY_UNDERSTOOD)]
        cni_version = capped[-1] if capped else ordered[0]
    doc: dict[str, Any] = {"cniVersion": cni_version}
    if len(ordered) > 1:
        doc["cniVersions"] = ordered
    doc["name"] = NETWORK_NAME
    doc["plugins"] = plugins
    return doc


def write_conflist(
    conf_dir: Path,
    *,
    mtu: int,
    socket: str,
    bin_dir: Path | None = None,
    plugin_type: str = "antrea",
    cni_version: str | None = None,
) -> Path:
    """Write ``conf_dir/10-antrea.conflist`` atomically and return its path.

    Args:
        conf_dir: the runtime's CNI config dir (``/etc/cni/net.d``); created if missing.
        mtu: see ``build_conflist``.
        socket: the agent's CNI socket path (``cniSocket``).
        bin_dir: where to look for ``portmap``/``bandwidth`` to chain (none when omitted).
        plugin_type: our executable's name in the bin dir.
        cni_version: force the conflist's ``cniVersion``.
    """
    chained: dict[str, tuple[str, ...]] = {}
    if bin_dir is not None:
        for chained_type, _ in CHAINED_PLUGINS:
            executable = Path(bin_dir) / chained_type
            if os.access(executable, os.X_OK):
                chained[chained_type] = plugin_versions(executable)
    doc = build_conflist(
        mtu=mtu, socket=socket, plugin_type=plugin_type, chained=chained, cni_version=cni_version
    )
    conf_dir = Path(conf_dir)
    conf_dir.mkdir(parents=True, exist_ok=True)
    target = conf_dir / CONFLIST_NAME
    write_atomic(target, json.dumps(doc, indent=2) + "\n", fsync=True)
    return target
