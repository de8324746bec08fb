"""Where a container's files live on the host, and the engine's settings that the daemon passes in.

- ``<data-root>/containers/<id>/``: durable: hostname, hosts, resolv.conf, ``<id>-json.log`` (Docker's place).
- ``<exec-root>/containers/<id>/``: runtime state that a reboot may lose: config.json (the OCI bundle),
  rootfs/ (the snapshot's mount point).
- ``<exec-root>/m/<first 32 hex digits of the id>/``: the monitor's socket, exit.json, exec process files
  (short, because a unix socket's path must fit in 107 bytes).
- ``<exec-root>/runtime/<name>/``: the ``--root`` each OCI runtime keeps its state in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["ContainerPaths", "EngineSettings"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineSettings:
    data_root: str
    exec_root: str
    runtimes: Mapping[str, str] = field(default_factory=lambda: {"ketch-runtime": "ketch-runtime"})
    default_runtime: str = "ketch-runtime"
    cgroup_parent: str = "/ketch"
    init_path: str = ""  # docker-init/tini on the host, for --init
    log_driver: str = "json-file"
    log_opts: Mapping[str, str] = field(default_factory=dict)
    stop_timeout: int = 10

    def runtime_root(self, name: str) -> str:
        return os.path.join(self.exec_root, "runtime", name)


@dataclass(frozen=True, slots=True)
class ContainerPaths:
    settings: EngineSettings
    id: str

    @property
    def data_dir(self) -> str:
        return os.path.join(self.settings.data_root, "containers", self.id)

    @property
    def bundle(self) -> str:
        return os.path.join(self.settings.exec_root, "containers", self.id)

    @property
    def rootfs(self) -> str:
        return os.path.join(self.bundle, "rootfs")

    @property
    def state_dir(self) -> str:
        # Unix socket paths are limited to 107 bytes: the monitor's directory uses half the ID (128 bits).
        return os.path.join(self.settings.exec_root, "m", self.id[:32])

    @property
    def log_path(self) -> str:
        return os.path.join(self.data_dir, f"{self.id}-json.log")

    @property
    def shim_socket(self) -> str:
        return os.path.join(self.state_dir, "shim.sock")
