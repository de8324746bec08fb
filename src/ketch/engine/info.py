"""``GET /info`` and ``GET /system/df``: facts about the host and real counts from the stores."""

from __future__ import annotations

import os
import platform
import threading
import time
from typing import Any

from ketch.common.errors import KetchError
from ketch.engine.containers import ContainerService
from ketch.engine.db import ContainerFilters
from ketch.engine.model import Status, format_time

__all__ = ["daemon_id", "disk_usage", "system_info"]


def _os_release() -> tuple[str, str]:
    try:
        with open("/etc/os-release") as f:
            fields = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
    except OSError:
        return "Linux", ""
    return fields.get("PRETTY_NAME", "Linux").strip('"'), fields.get("VERSION_ID", "").strip('"')


def _cgroup_version() -> str:
    return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


def _mem_total() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


def daemon_id(data_root: str) -> str:
    """A stable ID for this daemon, kept in ``<data-root>/engine-id`` (dockerd keeps one the same way)."""
    path = os.path.join(data_root, "engine-id")
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        import uuid

        value = str(uuid.uuid4())
        with open(path, "w") as f:
            f.write(value)
        return value


def system_info(
    service: ContainerService, *, version: str, insecure: list[str], debug: bool
) -> dict[str, Any]:
    with service._lock:
        containers = service.db.list_containers(ContainerFilters(all=True))
    running = sum(1 for c in containers if c.state.status is Status.RUNNING)
    paused = sum(1 for c in containers if c.state.status is Status.PAUSED)
    name, os_version = _os_release()
    settings = service.settings
    overlay = type(service.images.snapshotter).__name__.lower().startswith("overlay")
    return {
        "ID": daemon_id(settings.data_root),
        "Containers": len(containers),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": len(containers) - running - paused,
        "Images": len(service.images.images({}, False, shared_size=False)),
        "Driver": "overlay2" if overlay else "vfs",
        "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]] if overlay else [],
        "Plugins": {
            "Volume": ["local"],
            "Network": ["bridge", "host", "null"],
            "Authorization": None,
            "Log": ["json-file", "none"],
        },
        "MemoryLimit": True,
        "SwapLimit": os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"),
        "CpuCfsPeriod": True,
        "CpuCfsQuota": True,
        "CPUShares": True,
        "CPUSet": True,
        "PidsLimit": True,
        "IPv4Forwarding": _read("/proc/sys/net/ipv4/ip_forward") == "1",
        "BridgeNfIptables": False,
        "BridgeNfIp6tables": False,
        "Debug": debug,
        "NFd": len(os.listdir("/proc/self/fd")),
        "OomKillDisable": _cgroup_version() == "1",
        "NGoroutines": threading.active_count(),
        "SystemTime": format_time(time.time_ns()),
        "LoggingDriver": settings.log_driver,
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": _cgroup_version(),
        "NEventsListener": len(service.events._subscribers),
        "KernelVersion": platform.release(),
        "OperatingSystem": name,
        "OSVersion": os_version,
        "OSType": "linux",
        "Architecture": platform.machine(),
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {
            "AllowNondistributableArtifactsCIDRs": [],
            "AllowNondistributableArtifactsHostnames": [],
            "InsecureRegistryCIDRs": ["127.0.0.0/8"],
            "IndexConfigs": {
                "docker.io": {"Name": "docker.io", "Mirrors": [], "Secure": True, "Official": True},
                **{
                    name: {"Name": name, "Mirrors": [], "Secure": False, "Official": False}
                    for name in insecure
                },
            },
            "Mirrors": [],
        },
        "NCPU": os.cpu_count() or 1,
        "MemTotal": _mem_total(),
        "GenericResources": None,
        "DockerRootDir": settings.data_root,
        "HttpProxy": os.environ.get("HTTP_PROXY", ""),
        "HttpsProxy": os.environ.get("HTTPS_PROXY", ""),
        "NoProxy": os.environ.get("NO_PROXY", ""),
        "Name": platform.node(),
        "Labels": [],
        "ExperimentalBuild": False,
        "ServerVersion": version,
        "Runtimes": {name: {"path": path} for name, path in settings.runtimes.items()},
        "DefaultRuntime": settings.default_runtime,
        "Swarm": {
            "NodeID": "",
            "NodeAddr": "",
            "LocalNodeState": "inactive",
            "ControlAvailable": False,
            "Error": "",
            "RemoteManagers": None,
        },
        "LiveRestoreEnabled": True,
        "Isolation": "",
        "InitBinary": settings.init_path,
        "ContainerdCommit": {"ID": "", "Expected": ""},
        "RuncCommit": {"ID": "", "Expected": ""},
        "InitCommit": {"ID": "", "Expected": ""},
        "SecurityOptions": ["name=seccomp,profile=default", "name=cgroupns"],
        "Warnings": None,
    }


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def disk_usage(service: ContainerService, images: list[dict[str, Any]]) -> dict[str, Any]:
    from ketch.engine.render import list_item

    with service._lock:
        containers = service.db.list_containers(ContainerFilters(all=True))
    items = [
        list_item(c, image_name=c.record.config.image,
                  sizes=(service.size_rw(c.record.id), service.size_root_fs(c)))
        for c in containers
    ]  # fmt: skip
    in_use: dict[str, int] = {}
    for c in containers:
        in_use[c.record.image_id] = in_use.get(c.record.image_id, 0) + 1
    layers, shared = _layer_usage(service)
    for image in images:
        image["Containers"] = in_use.get(image.get("Id", ""), 0)
        image["SharedSize"] = shared.get(image.get("Id", ""), image.get("SharedSize", -1))
    return {
        "LayersSize": layers if layers is not None else sum(int(i.get("Size", 0)) for i in images),
        "Images": images,
        "Containers": items,
        "Volumes": [],
        "BuildCache": [],
    }


def _layer_usage(service: ContainerService) -> tuple[int | None, dict[str, int]]:
    """What ``/system/df`` adds to the image list: the size of every layer counted once, and per image the
    size of its layers that other images share (``docker system df -v``'s SHARED SIZE)."""
    try:
        records = list(service.images.store.read().images.values())
    except (KetchError, OSError):
        return None, {}
    users: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for rec in records:
        for chain, size in zip(rec.chain_ids, rec.layer_sizes, strict=False):
            users[chain] = users.get(chain, 0) + 1
            sizes[chain] = size
    shared = {
        rec.id: sum(
            size for chain, size in zip(rec.chain_ids, rec.layer_sizes, strict=False) if users[chain] > 1
        )
        for rec in records
    }
    return sum(sizes.values()), shared
