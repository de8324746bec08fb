"""Network namespaces kept alive by a bind mount on a file (``<exec-root>/netns/<id>``), as dockerd keeps its
sandboxes: the namespace outlives every process in it, so ketchd can configure it before the container starts
and a restarted ketchd finds it again.

Creating one: a short-lived thread unshares its network namespace (Linux namespaces are per thread) and bind
mounts ``/proc/self/task/<tid>/ns/net`` on the file; the thread then ends, and nothing else in ketchd changed
namespace.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from ketch.common.errors import SystemFailure
from ketch.sys import linux

__all__ = ["create", "exists", "remove", "run_in"]

CLONE_NEWNET = 0x40000000
_T = TypeVar("_T")


def exists(path: str) -> bool:
    """Whether ``path`` has a network namespace mounted on it."""
    try:
        with open("/proc/self/mountinfo") as f:
            target = os.path.realpath(path)
            return any(line.split()[4] == target for line in f)
    except OSError:
        return False


def create(path: str) -> str:
    """A new, empty network namespace (only ``lo``, down) held at ``path``; returns ``path``."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    if exists(path):
        return path
    with open(path, "a"):
        pass
    failure: list[BaseException] = []

    def make() -> None:
        try:
            linux.unshare(CLONE_NEWNET)
            linux.mount(f"/proc/self/task/{threading.get_native_id()}/ns/net", path, None, linux.MS_BIND)
        except BaseException as exc:  # reported to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=make, name="netns-create")
    thread.start()
    thread.join()
    if failure:
        with contextlib.suppress(OSError):
            os.unlink(path)
        exc = failure[0]
        if isinstance(exc, OSError):
            raise SystemFailure.from_oserror(f"create network namespace {path}", exc) from None
        raise exc
    return path


def remove(path: str) -> None:
    """Unmount and delete; the namespace goes once no process is left in it. Tolerates a missing path."""
    while exists(path):
        try:
            linux.umount2(path, linux.MNT_DETACH)
        except OSError as exc:
            raise SystemFailure.from_oserror(f"unmount network namespace {path}", exc) from None
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def run_in(netns_path: str, work: Callable[[], _T], *, name: str = "ketch-netns") -> _T:
    """Run ``work()`` inside the network namespace at ``netns_path`` (a held one, ``/proc/PID/ns/net``, ...)
    in a short-lived thread that joins it: setns moves only the calling thread, so no thread of the caller
    changes namespace, and sockets ``work`` opens stay in the namespace. Its result or exception is the
    caller's."""
    try:
        fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise SystemFailure.from_oserror(f"open network namespace {netns_path}", exc) from None
    result: list[_T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            try:
                linux.setns(fd, CLONE_NEWNET)
            except OSError as exc:
                raise SystemFailure.from_oserror(f"join network namespace {netns_path}", exc) from None
            result.append(work())
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    try:
        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        thread.join()
    finally:
        os.close(fd)
    if failure:
        raise failure[0]
    return result[0]
