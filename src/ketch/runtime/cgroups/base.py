"""What the v1 and v2 managers share: the interface and signalling every process of a cgroup."""

from __future__ import annotations

import errno
import os

from ketch.common.errors import KetchError, SystemFailure

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SIGKILL = 9


class Manager:
    """One container's cgroup in every mounted hierarchy. See ketch.runtime.cgroups for the contract."""

    path: str  # the cgroupsPath in effect

    def __init__(self, path: str) -> None:
        self.path = path

    # -- implemented per cgroup version ------------------------------------------------------------
    def create(self) -> None:
        raise NotImplementedError

    def apply(self, pid: int) -> None:
        raise NotImplementedError

    def set(self, resources: dict[str, Any]) -> None:
        raise NotImplementedError

    def freeze(self) -> None:
        raise NotImplementedError

    def thaw(self) -> None:
        raise NotImplementedError

    def is_frozen(self) -> bool:
        raise NotImplementedError

    def can_freeze(self) -> bool:
        raise NotImplementedError

    def pids(self) -> list[int]:
        raise NotImplementedError

    def oom_kill_count(self) -> int:
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        raise NotImplementedError

    def exists(self) -> bool:
        raise NotImplementedError

    def destroy(self) -> None:
        raise NotImplementedError

    def paths(self) -> dict[str, str]:
        raise NotImplementedError

    def _cgroup_kill(self) -> bool:
        """Kill everything through cgroup.kill if the kernel has it; True when that was enough."""
        return False

    # -- shared -----------------------------------------------------------------------------------
    def kill_all(self, sig: int) -> None:
        """Signal every process. The cgroup is frozen meanwhile so nothing can fork past the signal; it is
        thawed afterwards unless it was paused before (SIGKILL always thaws: frozen v1 tasks cannot die)."""
        if sig == SIGKILL and self._cgroup_kill():
            return
        freezable = self.can_freeze()
        was_frozen = False
        if freezable:
            try:
                was_frozen = self.is_frozen()
                self.freeze()
            except KetchError:
                pass  # signal anyway; a cgroup that will not freeze must still be killable
        try:
            signal_pids(self.pids(), sig)
        finally:
            if freezable and (sig == SIGKILL or not was_frozen):
                try:
                    self.thaw()
                except KetchError:
                    pass


def signal_pids(pids: list[int], sig: int) -> None:
    failed: list[str] = []
    first: OSError | None = None
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                continue  # already gone
            failed.append(str(pid))
            first = first or exc
    if first is not None:
        raise SystemFailure(
            f"cannot send signal {sig} to process(es) {', '.join(failed)}: {first.strerror}",
            errno=first.errno or 0,
        )
