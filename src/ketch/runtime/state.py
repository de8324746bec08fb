"""Containers' on-disk state under the runtime's ``--root``: ``<root>/<id>/state.json`` and ``exec.fifo``.

state.json is written whole with :func:`atomic_write`; it records the init pid together with the pid's
start time, so a recycled pid is never mistaken for the container. The status is derived, never stored:
no live init means stopped, a remaining exec.fifo means created, a frozen cgroup means paused.
"""

from __future__ import annotations

import os
import time

from ketch.common import fastjson
from ketch.common.atomic import atomic_write
from ketch.common.errors import Conflict, InvalidArgument, NotFound
from ketch.spec.oci_runtime import OCI_VERSION

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ContainerState", "check_id", "list_ids"]

DEFAULT_ROOT = "/run/ketch-runtime"
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


def check_id(container_id: str) -> str:
    if not container_id:
        raise InvalidArgument("container id cannot be empty")
    if container_id in (".", "..") or not set(container_id) <= _ID_CHARS or len(container_id) > 1024:
        raise InvalidArgument(f"invalid container id format: {container_id}")
    return container_id


def proc_start_time(pid: int) -> tuple[int, str] | None:
    """(start time in clock ticks, state letter) of ``pid``, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[19]), fields[0]


def now_rfc3339() -> str:
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


class ContainerState:
    """One container's record. ``data`` is state.json: the OCI state fields plus ketch's own."""

    __slots__ = ("cgroup", "data", "dir", "id", "root")

    def __init__(self, root: str, container_id: str, data: dict[str, Any]) -> None:
        self.cgroup: Any = None  # the cgroup manager, once a command has opened it
        self.root = root
        self.id = container_id
        self.dir = os.path.join(root, container_id)
        self.data = data

    # -- storage --------------------------------------------------------------------------------------
    @classmethod
    def reserve(cls, root: str, container_id: str) -> ContainerState:
        """Claim ``id`` by creating its directory; a second claim fails, so ids stay unique."""
        check_id(container_id)
        os.makedirs(root, mode=0o711, exist_ok=True)
        path = os.path.join(root, container_id)
        try:
            os.mkdir(path, 0o711)
        except FileExistsError:
            raise Conflict(f"container with id exists: {container_id}") from None
        return cls(root, container_id, {})

    @classmethod
    def load(cls, root: str, container_id: str) -> ContainerState:
        check_id(container_id)
        path = os.path.join(root, container_id, "state.json")
        try:
            with open(path, "rb") as f:
                data = fastjson.loads(f.read())
        except FileNotFoundError:
            raise NotFound(f"container {container_id!r} does not exist") from None
        except ValueError as exc:
            raise InvalidArgument(f"corrupt state for container {container_id}: {exc}") from None
        return cls(root, container_id, data)

    def save(self) -> None:
        atomic_write(
            os.path.join(self.dir, "state.json"),
            fastjson.dumps(self.data).encode(),
            mode=0o600,
            durable=False,
        )

    def remove(self) -> None:
        for name in ("state.json", "exec.fifo"):
            try:
                os.unlink(os.path.join(self.dir, name))
            except FileNotFoundError:
                pass
        try:
            os.rmdir(self.dir)
        except FileNotFoundError:
            pass

    # -- fields ---------------------------------------------------------------------------------------
    @property
    def fifo(self) -> str:
        return os.path.join(self.dir, "exec.fifo")

    @property
    def pid(self) -> int:
        return int(self.data.get("pid", 0))

    @property
    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = self.data["config"]
        return config

    def alive(self) -> bool:
        pid = self.pid
        if pid <= 0:
            return False
        info = proc_start_time(pid)
        return info is not None and info[0] == self.data.get("pid_start") and info[1] not in ("Z", "X")

    def status(self, *, frozen: bool | None = None) -> str:
        """creating / created / running / paused / stopped, as the runtime spec names them.

        ``frozen`` is the cgroup's freezer state when the caller already knows it; otherwise it is read
        from the cgroup files recorded in state.json.
        """
        if self.data.get("creating"):
            return "creating" if self.alive() or self.pid == 0 else "stopped"
        if not self.alive():
            return "stopped"
        if os.path.exists(self.fifo):
            return "created"
        if frozen is None:
            frozen = self.frozen()
        return "paused" if frozen else "running"

    def frozen(self) -> bool:
        paths = self.data.get("cgroup_paths", {})
        freezer = paths.get("freezer")
        try:
            if freezer:
                with open(os.path.join(freezer, "freezer.state"), "rb") as f:
                    return f.read().strip() in (b"FROZEN", b"FREEZING")
            if "" in paths:
                with open(os.path.join(paths[""], "cgroup.freeze"), "rb") as f:
                    return f.read().strip() == b"1"
        except OSError:
            return False
        return False

    def oci_state(self, status: str | None = None) -> dict[str, Any]:
        """The state object the runtime spec defines (what ``state`` prints and hooks read on stdin)."""
        status = status or self.status()
        state: dict[str, Any] = {
            "ociVersion": self.data.get("ociVersion", OCI_VERSION),
            "id": self.id,
            "status": status,
            "pid": self.pid if status != "stopped" else 0,
            "bundle": self.data.get("bundle", ""),
        }
        annotations = self.data.get("config", {}).get("annotations")
        if annotations:
            state["annotations"] = annotations
        return state

    def runc_state(self) -> dict[str, Any]:
        """``state``'s output: the OCI state plus runc's extra fields that containerd and podman read."""
        status = self.status()
        out = self.oci_state(status)
        out["rootfs"] = self.data.get("rootfs", "")
        out["created"] = self.data.get("created", "")
        out["owner"] = ""
        return out


def list_ids(root: str) -> list[str]:
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    return [n for n in names if os.path.exists(os.path.join(root, n, "state.json"))]
