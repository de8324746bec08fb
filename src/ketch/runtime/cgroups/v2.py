"""cgroup v2: one unified hierarchy. OCI resources are written in v1 terms and converted the way runc and
crun convert them; devices are enforced by an eBPF program (see devfilter)."""

from __future__ import annotations

import errno
import os
import time

from ketch.common.errors import InvalidArgument, KetchError, SystemFailure, Unsupported
from ketch.runtime.cgroups import convert, fs
from ketch.runtime.cgroups.base import Manager
from ketch.runtime.cgroups.resources import THROTTLES, Resources, parse
from ketch.runtime.cgroups.v1 import rdma_lines

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FREEZE_TIMEOUT = 10.0  # seconds to wait for cgroup.events to report the new frozen state


class V2Manager(Manager):
    def __init__(self, path: str, directory: str, mountpoint: str) -> None:
        super().__init__(path)
        self._dir = directory
        self._mountpoint = mountpoint

    # -- lifecycle --------------------------------------------------------------------------------
    def create(self) -> None:
        fs.make_dirs(self._dir)
        self._enable_controllers()

    def _enable_controllers(self) -> None:
        """Enable every available controller in cgroup.subtree_control of each ancestor, from the root
        down to the container's parent, so the container's cgroup gets the interface files. Failures are
        ignored (no-internal-process rule, delegation limits): set() reports missing controllers."""
        rel = os.path.relpath(self._dir, self._mountpoint)
        parts = [] if rel == "." else rel.split("/")
        cur = self._mountpoint
        levels = [cur]
        for part in parts[:-1]:
            cur = os.path.join(cur, part)
            levels.append(cur)
        for level in levels:
            available = (fs.read_opt(level, "cgroup.controllers") or "").split()
            enabled = set((fs.read_opt(level, "cgroup.subtree_control") or "").split())
            wanted = [c for c in available if c not in enabled]
            if not wanted:
                continue
            try:
                fs.write(level, "cgroup.subtree_control", " ".join("+" + c for c in wanted))
            except KetchError:
                for c in wanted:
                    try:
                        fs.write(level, "cgroup.subtree_control", "+" + c)
                    except KetchError:
                        continue

    def apply(self, pid: int) -> None:
        fs.add_proc(self._dir, pid)

    def exists(self) -> bool:
        return os.path.isdir(self._dir)

    def destroy(self) -> None:
        fs.remove_tree(self._dir)

    def paths(self) -> dict[str, str]:
        return {"": self._dir}

    def pids(self) -> list[int]:
        return fs.all_procs(self._dir)

    def _cgroup_kill(self) -> bool:
        if not fs.exists(self._dir, "cgroup.kill"):
            return False  # before Linux 5.14
        fs.write(self._dir, "cgroup.kill", "1")
        return True

    # -- freezer ----------------------------------------------------------------------------------
    def can_freeze(self) -> bool:
        return fs.exists(self._dir, "cgroup.freeze")

    def _set_frozen(self, frozen: bool) -> None:
        if not self.can_freeze():
            raise Unsupported(
                f"cannot {'pause' if frozen else 'resume'}: no cgroup.freeze in {self._dir} "
                "(the cgroup v2 freezer needs Linux 5.2)"
            )
        want = "1" if frozen else "0"
        fs.write(self._dir, "cgroup.freeze", want)
        # The write only starts the transition; cgroup.events says when every task got there.
        deadline = time.monotonic() + FREEZE_TIMEOUT
        delay = 0.0005
        while True:
            events = fs.read_opt(self._dir, "cgroup.events")
            if events is None or fs.keyed(events).get("frozen") == int(want):
                return
            if time.monotonic() >= deadline:
                if frozen:
                    try:
                        fs.write(self._dir, "cgroup.freeze", "0")
                    except KetchError:
                        pass
                raise SystemFailure(
                    f"{'freezing' if frozen else 'thawing'} {self._dir} did not complete within "
                    f'{FREEZE_TIMEOUT:g}s (cgroup.events never showed "frozen {want}")',
                    path=self._dir,
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    def freeze(self) -> None:
        self._set_frozen(True)

    def thaw(self) -> None:
        self._set_frozen(False)

    def is_frozen(self) -> bool:
        if (fs.read_opt(self._dir, "cgroup.freeze") or "").strip() != "1":
            return False
        return fs.keyed(fs.read_opt(self._dir, "cgroup.events")).get("frozen") == 1

    # -- accounting -------------------------------------------------------------------------------
    def oom_kill_count(self) -> int:
        return fs.keyed(fs.read_opt(self._dir, "memory.events")).get("oom_kill", 0)

    def stats(self) -> dict[str, Any]:
        from ketch.runtime.cgroups import stats  # only `events` reads them: keep it off the start path

        return stats.v2(self._dir)

    # -- resources --------------------------------------------------------------------------------
    def set(self, resources: dict[str, Any]) -> None:
        r = parse(resources)
        if r.rt_runtime is not None or r.rt_period is not None:
            raise Unsupported(
                "linux.resources.cpu.realtimeRuntime/realtimePeriod cannot be set: cgroup v2 has no "
                "realtime bandwidth control"
            )
        self._check_controllers(r)
        d = self._dir
        if r.pids_limit is not None:
            fs.write(d, "pids.max", "max" if r.pids_limit < 0 else str(r.pids_limit))
        self._set_memory(d, r)
        self._set_io(d, r)
        self._set_cpu(d, r)
        if r.devices is not None:
            self._set_devices(r)
        if r.cpus is not None:
            fs.write(d, "cpuset.cpus", r.cpus)
        if r.mems is not None:
            fs.write(d, "cpuset.mems", r.mems)
        for size, limit in r.hugepages:
            fs.write(d, f"hugetlb.{size}.max", str(limit))
            if fs.exists(d, f"hugetlb.{size}.rsvd.max"):
                fs.write(d, f"hugetlb.{size}.rsvd.max", str(limit))
        for line in rdma_lines(r):
            fs.write(d, "rdma.max", line)
        self._set_unified(r.unified)

    def _available(self) -> frozenset[str] | None:
        text = fs.read_opt(self._dir, "cgroup.controllers")
        return None if text is None else frozenset(text.split())

    def _check_controllers(self, r: Resources) -> None:
        available = self._available()
        if available is None:
            return  # cgroup not created yet: the writes themselves will say what is wrong
        need = r.needs()
        need.pop("devices", None)  # eBPF, not a controller
        if "blkio" in need:
            field = need.pop("blkio")
            if r.blkio_weight is not None or r.weight_devices or any(r.throttle.values()):
                need["io"] = field  # leafWeight alone does not exist on v2 and is ignored
        if (
            r.cpu_shares is None
            and r.cpu_quota is None
            and r.cpu_period is None
            and r.cpu_idle is None
            and r.cpu_burst is None
        ):
            need.pop("cpu", None)
        if r.memory_limit is None and r.memory_reservation is None and r.memory_swap is None:
            need.pop("memory", None)  # swappiness / OOM killer switch do not exist on v2 and are ignored
        for ctrl, field in need.items():
            if ctrl not in available:
                raise Unsupported(
                    f"{field} needs the {ctrl} cgroup controller, which is not available in {self._dir} "
                    f"(cgroup.controllers: {' '.join(sorted(available)) or 'none'})"
                )

    def _set_memory(self, d: str, r: Resources) -> None:
        if r.memory_limit is None and r.memory_reservation is None and r.memory_swap is None:
            return
        limit = r.memory_limit or 0
        swap = convert.swap_to_v2(r.memory_swap or 0, limit)
        if swap is not None:
            value = convert.limit_str(swap)
            try:
                fs.write(d, "memory.swap.max", value)
            except SystemFailure as exc:
                # No swap accounting: lifting or disabling swap is then a no-op, anything else is not.
                if not (exc.errno == errno.ENOENT and value in ("max", "0")):
                    raise
        if r.memory_limit is not None:
            fs.write(d, "memory.max", convert.limit_str(r.memory_limit))
        if r.memory_reservation is not None:
            fs.write(d, "memory.low", convert.limit_str(r.memory_reservation))

    def _set_io(self, d: str, r: Resources) -> None:
        bfq = (r.blkio_weight is not None or r.weight_devices) and fs.exists(d, "io.bfq.weight")
        if r.blkio_weight is not None:
            if bfq:
                fs.write(d, "io.bfq.weight", str(r.blkio_weight))
            else:
                fs.write(d, "io.weight", str(convert.blkio_weight_to_io_weight(r.blkio_weight)))
        if bfq:  # only BFQ has per-device weights; leaf weights do not exist on v2
            for wd in r.weight_devices:
                if wd.weight:
                    fs.write(d, "io.bfq.weight", f"{wd.major}:{wd.minor} {wd.weight}")
        for key, _v1, v2_name in THROTTLES:
            for major, minor, rate in r.throttle.get(key, ()):
                fs.write(d, "io.max", f"{major}:{minor} {v2_name}={rate}")

    def _set_cpu(self, d: str, r: Resources) -> None:
        if r.cpu_shares is not None:
            fs.write(d, "cpu.weight", str(convert.shares_to_weight(r.cpu_shares)))
        if r.cpu_quota is not None or r.cpu_period is not None:
            value = str(r.cpu_quota) if r.cpu_quota is not None and r.cpu_quota > 0 else "max"
            if r.cpu_period is not None:
                value += f" {r.cpu_period}"
            fs.write(d, "cpu.max", value)
        if r.cpu_burst is not None:
            fs.write(d, "cpu.max.burst", str(r.cpu_burst))
        if r.cpu_idle is not None:
            fs.write(d, "cpu.idle", str(r.cpu_idle))

    def _set_devices(self, r: Resources) -> None:
        from ketch.runtime.cgroups import devfilter
        from ketch.runtime.cgroups.devices import emulate

        program = devfilter.generate(emulate(r.devices or []))
        attach_program(self._dir, program)

    def _set_unified(self, unified: dict[str, str]) -> None:
        available: frozenset[str] | None = None
        for key, value in unified.items():
            try:
                # Multi-line values (io.max for several devices) are one write per line.
                for line in [part for part in value.split("\n") if part] or [value]:
                    fs.write(self._dir, key, line)
            except SystemFailure as exc:
                if exc.errno in (errno.ENOENT, errno.EPERM, errno.EACCES):
                    ctrl, dot, _ = key.partition(".")
                    if not dot:
                        raise InvalidArgument(
                            f"unified resource {key!r} must be in the form CONTROLLER.PARAMETER"
                        ) from None
                    if available is None:
                        available = self._available() or frozenset()
                    if ctrl != "cgroup" and ctrl not in available:
                        raise Unsupported(
                            f"unified resource {key!r} can't be set: controller {ctrl!r} not available"
                        ) from None
                raise SystemFailure(
                    f"unable to set unified resource {key!r}: {exc}", errno=exc.errno, path=exc.path
                ) from None


def attach_program(directory: str, program: bytes) -> None:
    """Attach a device program to the cgroup, then detach the ones attached before (update replaces the
    rules; attaching first means there is no moment without a filter)."""
    from ketch.sys import bpf

    try:
        cg = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise SystemFailure.from_oserror(f"cannot open cgroup {directory}", exc) from None
    try:
        try:
            old = bpf.query(cg)
        except SystemFailure:
            old = []
        prog = bpf.load_cgroup_device_prog(program)
        try:
            bpf.attach(cg, prog)
        finally:
            os.close(prog)
        for prog_id in old:
            try:
                old_fd = bpf.prog_fd_by_id(prog_id)
            except SystemFailure:
                continue
            try:
                bpf.detach(cg, old_fd)
            except SystemFailure as exc:
                if exc.errno != errno.ENOENT:
                    raise
            finally:
                os.close(old_fd)
    finally:
        os.close(cg)
