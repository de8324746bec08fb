"""cgroup v1 (one hierarchy per controller), and the hybrid layout where a cgroup2 hierarchy without
controllers is mounted next to them (the container joins it too, but nothing fails because of it)."""

from __future__ import annotations

import errno
import os
import time

from ketch.common.errors import InvalidArgument, KetchError, SystemFailure, Unsupported
from ketch.runtime.cgroups import fs
from ketch.runtime.cgroups.base import Manager
from ketch.runtime.cgroups.resources import THROTTLES, Resources, parse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# The order runc's cgroupfs driver applies controllers in.
_SET_ORDER = ("cpuset", "devices", "memory", "cpu", "pids", "blkio", "hugetlb", "rdma")
# Which hierarchy's cgroup.procs lists the container's processes (every joined one does; prefer these).
_PIDS_FROM = ("freezer", "devices", "pids", "memory", "cpu")
FREEZE_ATTEMPTS = 1000


class V1Manager(Manager):
    def __init__(self, path: str, dirs: dict[str, str], unified: str | None = None) -> None:
        """dirs: controller -> directory (co-mounted controllers share one); unified: the hybrid cgroup2
        directory, joined on a best-effort basis."""
        super().__init__(path)
        self._dirs = dirs
        self._unified = unified

    def _unique_dirs(self) -> list[str]:
        return list(dict.fromkeys(self._dirs.values()))

    # -- lifecycle --------------------------------------------------------------------------------
    def create(self) -> None:
        created: list[str] = []
        try:
            for d in self._unique_dirs():
                created.extend(fs.make_dirs(d))
            if "cpuset" in self._dirs:
                self._inherit_cpuset(self._dirs["cpuset"])
        except KetchError:
            for d in reversed(created):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
            raise
        if self._unified:
            try:
                fs.make_dirs(self._unified)
            except KetchError:
                pass  # hybrid: the unified part is a nicety

    def _inherit_cpuset(self, leaf: str) -> None:
        """A new v1 cpuset cgroup starts with empty cpus/mems and nobody can join it; copy the parent's
        values down every level that is still empty (as runc does)."""
        chain: list[str] = []
        cur = leaf
        while fs.exists(os.path.dirname(cur), "cpuset.cpus") and cur != os.path.dirname(cur):
            chain.append(cur)
            cur = os.path.dirname(cur)
        for d in reversed(chain):
            parent = os.path.dirname(d)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if not fs.exists(d, name):
                    continue
                if (fs.read(d, name)).strip():
                    continue
                value = fs.read(parent, name).strip()
                if value:
                    fs.write(d, name, value)

    def apply(self, pid: int) -> None:
        for d in self._unique_dirs():
            fs.add_proc(d, pid)
        if self._unified and os.path.isdir(self._unified):
            try:
                fs.add_proc(self._unified, pid)
            except KetchError:
                pass

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self._unique_dirs())

    def destroy(self) -> None:
        first: KetchError | None = None
        for d in self._unique_dirs():
            try:
                fs.remove_tree(d)
            except KetchError as exc:
                first = first or exc
        if self._unified:
            try:
                fs.remove_tree(self._unified)
            except KetchError:
                pass
        if first is not None:
            raise first

    def paths(self) -> dict[str, str]:
        out = dict(self._dirs)
        if self._unified:
            out[""] = self._unified
        return out

    def pids(self) -> list[int]:
        for ctrl in _PIDS_FROM:
            if ctrl in self._dirs:
                return fs.all_procs(self._dirs[ctrl])
        dirs = self._unique_dirs()
        return fs.all_procs(dirs[0]) if dirs else []

    def _cgroup_kill(self) -> bool:
        # Hybrid: cgroup.kill on the unified side gets most processes at once; the freezer-based pass
        # still runs for any process that did not make it into the unified cgroup.
        if self._unified and fs.exists(self._unified, "cgroup.kill"):
            try:
                fs.write(self._unified, "cgroup.kill", "1")
            except KetchError:
                pass
        return False

    # -- freezer ----------------------------------------------------------------------------------
    def can_freeze(self) -> bool:
        return "freezer" in self._dirs

    def _freezer(self) -> str:
        d = self._dirs.get("freezer")
        if d is None:
            raise Unsupported("cannot pause: the freezer cgroup controller is not mounted")
        return d

    def freeze(self) -> None:
        """Write FROZEN until the state reads FROZEN. Processes forking meanwhile can keep a v1 cgroup
        in FREEZING; re-writing, with an occasional thaw and short sleep, gets it through."""
        d = self._freezer()
        for attempt in range(FREEZE_ATTEMPTS):
            if attempt % 50 == 49:
                fs.write(d, "freezer.state", "THAWED")
                time.sleep(0.01)
            fs.write(d, "freezer.state", "FROZEN")
            if attempt % 25 == 24:
                time.sleep(0.0001)
            state = fs.read(d, "freezer.state").strip()
            if state == "FROZEN":
                return
            if state != "FREEZING":
                raise SystemFailure(f"unexpected freezer state {state!r} in {d} while freezing", path=d)
        fs.write(d, "freezer.state", "THAWED")
        raise SystemFailure(f"cannot freeze {d}: processes kept it in state FREEZING", path=d)

    def thaw(self) -> None:
        fs.write(self._freezer(), "freezer.state", "THAWED")

    def is_frozen(self) -> bool:
        d = self._dirs.get("freezer")
        if d is None:
            return False
        for _ in range(100):
            state = (fs.read_opt(d, "freezer.state") or "").strip()
            if state != "FREEZING":
                break
            time.sleep(0.001)
        if state != "FROZEN":
            return False
        # FROZEN because an ancestor is frozen does not make this container paused.
        self_freezing = fs.read_opt(d, "freezer.self_freezing")
        return self_freezing is None or self_freezing.strip() == "1"

    # -- accounting -------------------------------------------------------------------------------
    def oom_kill_count(self) -> int:
        d = self._dirs.get("memory")
        if d is None:
            return 0
        return fs.keyed(fs.read_opt(d, "memory.oom_control")).get("oom_kill", 0)

    def stats(self) -> dict[str, Any]:
        from ketch.runtime.cgroups import stats  # only `events` reads them: keep it off the start path

        return stats.v1(self._dirs)

    # -- resources --------------------------------------------------------------------------------
    def set(self, resources: dict[str, Any]) -> None:
        r = parse(resources)
        if r.unified:
            key = next(iter(r.unified))
            raise InvalidArgument(
                f"linux.resources.unified[{key!r}] cannot be set: cgroup v2 (unified) resources are not "
                "supported on cgroup v1"
            )
        need = r.needs()
        for ctrl, field in need.items():
            if ctrl not in self._dirs:
                raise Unsupported(
                    f"{field} needs the {ctrl} cgroup controller, which is not mounted on this host"
                )
        for ctrl in _SET_ORDER:
            if ctrl in need:
                getattr(self, f"_set_{ctrl}")(self._dirs[ctrl], r)

    def _set_cpuset(self, d: str, r: Resources) -> None:
        if r.cpus is not None:
            fs.write(d, "cpuset.cpus", r.cpus)
        if r.mems is not None:
            fs.write(d, "cpuset.mems", r.mems)

    def _set_devices(self, d: str, r: Resources) -> None:
        fs.write(d, "devices.deny", "a")
        for rule in r.devices or ():
            fs.write(d, "devices.allow" if rule.allow else "devices.deny", rule.v1_string())

    def _set_memory(self, d: str, r: Resources) -> None:
        limit = r.memory_limit
        swap = r.memory_swap
        has_swap_file = fs.exists(d, "memory.memsw.limit_in_bytes")
        # Unlimited memory without a swap setting means unlimited memory+swap too (runc's rule).
        if limit == -1 and swap is None and has_swap_file:
            swap = -1
        if swap == -1 and not has_swap_file:
            swap = None  # no swap accounting: nothing to lift
        if limit is not None and swap is not None:
            # memsw must stay >= limit after every single write: raise memsw first when growing,
            # lower the limit first when shrinking.
            current = fs.uint(fs.read_opt(d, "memory.limit_in_bytes"))
            if swap == -1 or current < swap:
                fs.write(d, "memory.memsw.limit_in_bytes", str(swap))
                self._write_limit(d, limit)
            else:
                self._write_limit(d, limit)
                fs.write(d, "memory.memsw.limit_in_bytes", str(swap))
        elif limit is not None:
            self._write_limit(d, limit)
        elif swap is not None:
            fs.write(d, "memory.memsw.limit_in_bytes", str(swap))
        if r.memory_reservation is not None:
            fs.write(d, "memory.soft_limit_in_bytes", str(r.memory_reservation))
        if r.disable_oom_killer:
            fs.write(d, "memory.oom_control", "1")
        if r.swappiness is not None:
            fs.write(d, "memory.swappiness", str(r.swappiness))

    @staticmethod
    def _write_limit(d: str, limit: int) -> None:
        try:
            fs.write(d, "memory.limit_in_bytes", str(limit))
        except SystemFailure as exc:
            if exc.errno != errno.EBUSY:
                raise
            usage = fs.uint(fs.read_opt(d, "memory.usage_in_bytes"))
            peak = fs.uint(fs.read_opt(d, "memory.max_usage_in_bytes"))
            raise SystemFailure(
                f"cannot set memory limit to {limit} (current usage: {usage}, peak usage: {peak}): {exc}",
                errno=exc.errno,
                path=exc.path,
            ) from None

    def _set_cpu(self, d: str, r: Resources) -> None:
        if r.cpu_shares is not None:
            fs.write(d, "cpu.shares", str(r.cpu_shares))
            got = fs.uint(fs.read_opt(d, "cpu.shares"))
            if r.cpu_shares > got:
                raise InvalidArgument(f"the maximum allowed cpu-shares is {got} (asked for {r.cpu_shares})")
            if r.cpu_shares < got:
                raise InvalidArgument(f"the minimum allowed cpu-shares is {got} (asked for {r.cpu_shares})")
        retry_period = False
        if r.cpu_period is not None:
            try:
                fs.write(d, "cpu.cfs_period_us", str(r.cpu_period))
            except SystemFailure as exc:
                # A shorter period can make old_quota/new_period exceed the parent's bandwidth; it fits
                # once the new quota is in.
                if exc.errno != errno.EINVAL or r.cpu_quota is None:
                    raise
                retry_period = True
        if r.cpu_burst is not None:
            fs.write(d, "cpu.cfs_burst_us", str(r.cpu_burst))
        if r.cpu_quota is not None:
            fs.write(d, "cpu.cfs_quota_us", str(r.cpu_quota))
            if retry_period:
                fs.write(d, "cpu.cfs_period_us", str(r.cpu_period))
        if r.cpu_idle is not None:
            fs.write(d, "cpu.idle", str(r.cpu_idle))
        if r.rt_period is not None:
            fs.write(d, "cpu.rt_period_us", str(r.rt_period))
        if r.rt_runtime is not None:
            fs.write(d, "cpu.rt_runtime_us", str(r.rt_runtime))

    def _set_pids(self, d: str, r: Resources) -> None:
        assert r.pids_limit is not None
        fs.write(d, "pids.max", "max" if r.pids_limit < 0 else str(r.pids_limit))

    def _set_blkio(self, d: str, r: Resources) -> None:
        if fs.exists(d, "blkio.weight"):
            weight, weight_device = "blkio.weight", "blkio.weight_device"
        else:  # CFQ is gone (kernel 5.0+); BFQ has its own files
            weight, weight_device = "blkio.bfq.weight", "blkio.bfq.weight_device"
        if r.blkio_weight is not None:
            fs.write(d, weight, str(r.blkio_weight))
        if r.blkio_leaf_weight is not None:
            fs.write(d, "blkio.leaf_weight", str(r.blkio_leaf_weight))
        for wd in r.weight_devices:
            if wd.weight:
                fs.write(d, weight_device, f"{wd.major}:{wd.minor} {wd.weight}")
            if wd.leaf_weight:
                fs.write(d, "blkio.leaf_weight_device", f"{wd.major}:{wd.minor} {wd.leaf_weight}")
        for key, v1_name, _v2 in THROTTLES:
            for major, minor, rate in r.throttle.get(key, ()):
                fs.write(d, f"blkio.throttle.{v1_name}_device", f"{major}:{minor} {rate}")

    def _set_hugetlb(self, d: str, r: Resources) -> None:
        for size, limit in r.hugepages:
            fs.write(d, f"hugetlb.{size}.limit_in_bytes", str(limit))
            if fs.exists(d, f"hugetlb.{size}.rsvd.limit_in_bytes"):
                fs.write(d, f"hugetlb.{size}.rsvd.limit_in_bytes", str(limit))

    def _set_rdma(self, d: str, r: Resources) -> None:
        for line in rdma_lines(r):
            fs.write(d, "rdma.max", line)


def rdma_lines(r: Resources) -> list[str]:
    lines = []
    for device, (handles, objects) in r.rdma.items():
        line = device
        if handles is not None:
            line += f" hca_handle={handles}"
        if objects is not None:
            line += f" hca_object={objects}"
        lines.append(line)
    return lines
