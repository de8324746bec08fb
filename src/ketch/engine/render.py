"""Containers as the Engine API shows them: ``GET /containers/{id}/json`` and ``GET /containers/json`` items."""

from __future__ import annotations

import platform
import time
from typing import Any

from ketch.engine import lifecycle
from ketch.engine.db import Container
from ketch.engine.layout import ContainerPaths
from ketch.engine.model import format_time
from ketch.engine.ocispec import MASKED_PATHS, READONLY_PATHS
from ketch.image.snapshots.base import Mount

__all__ = ["inspect_container", "list_item", "network_settings"]


# HostConfig fields dockerd always shows that ketch does not model (links, DNS, ports, realtime and Windows
# knobs): their zero values, as dockerd 20.10 renders them (docker-api-traces 22-inspect-container).
_HOST_CONFIG_ZEROS: dict[str, Any] = {
    "PortBindings": {}, "VolumeDriver": "", "VolumesFrom": None, "Dns": [], "DnsOptions": [], "DnsSearch": [],
    "ExtraHosts": None, "Cgroup": "", "Links": None, "PublishAllPorts": False, "BlkioWeightDevice": [],
    "BlkioDeviceReadBps": None, "BlkioDeviceWriteBps": None, "BlkioDeviceReadIOps": None,
    "BlkioDeviceWriteIOps": None, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "DeviceCgroupRules": None,
    "DeviceRequests": None, "KernelMemory": 0, "KernelMemoryTCP": 0, "CpuCount": 0, "CpuPercent": 0,
    "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
}  # fmt: skip


def _host_config(container: Container) -> dict[str, Any]:
    host = container.record.host_config
    out = host.to_api()
    out.pop("NetworkingConfig", None)  # kept with the HostConfig by ketch, not a HostConfig field
    for key, value in _HOST_CONFIG_ZEROS.items():
        out.setdefault(key, value)
    # the paths the OCI spec masks or makes read-only (ocispec.py); a privileged container has none
    out.setdefault("MaskedPaths", None if host.privileged else list(MASKED_PATHS))
    out.setdefault("ReadonlyPaths", None if host.privileged else list(READONLY_PATHS))
    return out


def _config(container: Container) -> dict[str, Any]:
    record = container.record
    out = record.config.to_api()
    if not out.get(
        "Hostname"
    ):  # dockerd fills it at create: the host's name with --network host, else the ID
        host_mode = record.host_config.network_mode == "host"
        out["Hostname"] = platform.node() if host_mode else record.id[:12]
    if not out.get("Volumes"):  # the CLI sends {}; dockerd keeps no empty map
        out["Volumes"] = None
    return out


def _command(path: str, args: list[str]) -> str:
    """``GET /containers/json``'s Command: moby quotes each argument that holds a space in single quotes."""
    return " ".join([path, *(f"'{arg}'" if " " in arg else arg for arg in args)])


def _path_args(container: Container) -> tuple[str, list[str]]:
    config = container.record.config
    argv = [*(config.entrypoint or ()), *(config.cmd or ())]
    return (argv[0], argv[1:]) if argv else ("", [])


def _network_name(mode: str) -> str:
    return "bridge" if mode in ("", "default") else mode


def _endpoint() -> dict[str, Any]:
    return {
        "IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": "", "EndpointID": "", "Gateway": "",
        "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
        "MacAddress": "", "DriverOpts": None,
    }  # fmt: skip


def network_settings(container: Container) -> dict[str, Any]:
    mode = container.record.host_config.network_mode
    networks = {} if mode.startswith("container:") else {_network_name(mode): _endpoint()}
    return {
        "Bridge": "", "SandboxID": "", "HairpinMode": False, "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0, "Ports": {}, "SandboxKey": "", "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None, "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0, "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
        "Networks": networks,
    }  # fmt: skip


def _settings(container: Container, networks: Any) -> dict[str, Any]:
    """NetworkSettings from engine/networks.py's NetworkService when the daemon has one."""
    show = getattr(networks, "container_network_settings", None)
    return show(container.record.id, container.record) if show is not None else network_settings(container)


def graph_driver(mounts: list[Mount], merged: str) -> dict[str, Any]:
    data: dict[str, str] = {}
    for m in mounts:
        for opt in m.options:
            key, sep, value = opt.partition("=")
            if sep and key in ("lowerdir", "upperdir", "workdir"):
                data[{"lowerdir": "LowerDir", "upperdir": "UpperDir", "workdir": "WorkDir"}[key]] = value
        if m.type == "bind":
            data["UpperDir"] = m.source
    data["MergedDir"] = merged
    return {"Data": data, "Name": "overlay2" if any(m.type == "overlay" for m in mounts) else "vfs"}


def _mounts(container: Container) -> list[dict[str, Any]]:
    out = []
    for bind in container.record.host_config.binds or ():
        parts = bind.split(":")
        if len(parts) < 2:
            continue
        opts = parts[2].split(",") if len(parts) > 2 else []
        out.append({"Type": "bind", "Source": parts[0], "Destination": parts[1], "Mode": ",".join(opts),
                    "RW": "ro" not in opts, "Propagation": "rprivate"})  # fmt: skip
    for dest in container.record.host_config.tmpfs or {}:
        out.append({"Type": "tmpfs", "Source": "", "Destination": dest, "Mode": "", "RW": True,
                    "Propagation": ""})  # fmt: skip
    return out


def inspect_container(
    container: Container,
    paths: ContainerPaths,
    *,
    graph: dict[str, Any],
    exec_ids: list[str],
    sizes: tuple[int, int] | None = None,
    networks: Any = None,
) -> dict[str, Any]:
    record, state = container.record, container.state
    path, args = _path_args(container)
    log_path = paths.log_path if record.host_config.log_config.type == "json-file" else ""
    out: dict[str, Any] = {
        "Id": record.id,
        "Created": format_time(record.created_at),
        "Path": path,
        "Args": args,
        "State": lifecycle.render_state(state),
        "Image": record.image_id,
        "ResolvConfPath": f"{paths.data_dir}/resolv.conf",
        "HostnamePath": f"{paths.data_dir}/hostname",
        "HostsPath": f"{paths.data_dir}/hosts",
        "LogPath": log_path,
        "Name": record.name,
        "RestartCount": state.restart_count,
        "Driver": graph["Name"],
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": exec_ids or None,
        "HostConfig": _host_config(container),
        "GraphDriver": graph,
    }
    if sizes is not None:
        out["SizeRw"], out["SizeRootFs"] = sizes
    out["Mounts"] = _mounts(container)
    out["Config"] = _config(container)
    out["NetworkSettings"] = _settings(container, networks)
    return out


def list_item(
    container: Container, *, image_name: str, sizes: tuple[int, int] | None = None, networks: Any = None
) -> dict[str, Any]:
    record, state = container.record, container.state
    path, args = _path_args(container)
    command = _command(path, args) if path else ""
    mode = record.host_config.network_mode or "default"
    item: dict[str, Any] = {
        "Id": record.id,
        "Names": [record.name],
        "Image": image_name,
        "ImageID": record.image_id,
        "Command": command,
        "Created": record.created_at // 10**9,
        "Ports": ports(record.id) if (ports := getattr(networks, "ports_for_list", None)) else [],
        "Labels": dict(record.labels),
        "State": str(state.status),
        "Status": lifecycle.status_text(state, time.time_ns()),
        "HostConfig": {"NetworkMode": mode},
        "NetworkSettings": {"Networks": _settings(container, networks)["Networks"]},
        "Mounts": _mounts(container),
    }
    if sizes is not None:
        item["SizeRw"], item["SizeRootFs"] = sizes
    return item
