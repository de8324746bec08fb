"""The few bpf(2) commands needed to enforce device rules on cgroup v2.

Loads BPF_PROG_TYPE_CGROUP_DEVICE programs and attaches/detaches them to a cgroup directory with
BPF_F_ALLOW_MULTI (so programs of ancestors, e.g. systemd's, keep applying too). union bpf_attr is built
as a zeroed byte buffer with the fields at their uapi offsets.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct

from ketch.common.errors import SystemFailure, Unsupported

# enum bpf_cmd
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
# enum bpf_prog_type / bpf_attach_type
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 1 << 1

_SYS_BPF = {
    "x86_64": 321,
    "aarch64": 280,
    "arm64": 280,
    "armv7l": 386,
    "ppc64le": 361,
    "s390x": 351,
    "riscv64": 280,
    "i686": 357,
    "i386": 357,
}
_ATTR_SIZE = 128  # larger than every layout used here; the kernel requires the unused tail to be zero

_libc: ctypes.CDLL | None = None


def _syscall(cmd: int, attr: ctypes.Array[ctypes.c_char], what: str) -> int:
    global _libc
    nr = _SYS_BPF.get(platform.machine())
    if nr is None:
        raise Unsupported(f"bpf(2) syscall number unknown on {platform.machine()}")
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    ret = int(_libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), attr, ctypes.c_uint(_ATTR_SIZE)))
    if ret < 0:
        err = ctypes.get_errno()
        if err == 38:  # ENOSYS
            raise Unsupported(f"{what}: the kernel has no bpf(2) support")
        raise SystemFailure(f"{what}: {os.strerror(err)}", errno=err)
    return ret


def _attr(fmt: str, *values: object) -> ctypes.Array[ctypes.c_char]:
    buf = ctypes.create_string_buffer(_ATTR_SIZE)
    struct.pack_into(fmt, buf, 0, *values)
    return buf


def load_cgroup_device_prog(insns: bytes, license_name: str = "Apache") -> int:
    """Load a device program; returns its fd. On a verifier rejection the error carries the log."""
    if len(insns) % 8:
        raise ValueError("BPF program length must be a multiple of 8")
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license_name.encode())
    name = b"ketch_devices"

    def attempt(log: ctypes.Array[ctypes.c_char] | None) -> int:
        # prog_type, insn_cnt, insns, license, log_level, log_size, log_buf, kern_version, prog_flags, name
        attr = _attr(
            "=IIQQIIQII16s",
            BPF_PROG_TYPE_CGROUP_DEVICE,
            len(insns) // 8,
            ctypes.addressof(code),
            ctypes.addressof(lic),
            1 if log is not None else 0,
            len(log) if log is not None else 0,
            ctypes.addressof(log) if log is not None else 0,
            0,
            0,
            name,
        )
        return _syscall(BPF_PROG_LOAD, attr, "cannot load the cgroup v2 device filter (BPF_PROG_LOAD)")

    try:
        return attempt(None)
    except SystemFailure as exc:
        if exc.errno not in (13, 22):  # EACCES / EINVAL: the verifier refused; get its log
            raise
        log = ctypes.create_string_buffer(65536)
        try:
            return attempt(log)
        except SystemFailure as again:
            text = log.value.decode(errors="replace").strip()
            raise SystemFailure(f"{again}; verifier log: {text}", errno=again.errno) from None


def attach(cgroup_fd: int, prog_fd: int, flags: int = BPF_F_ALLOW_MULTI) -> None:
    # target_fd, attach_bpf_fd, attach_type, attach_flags
    attr = _attr("=IIII", cgroup_fd, prog_fd, BPF_CGROUP_DEVICE, flags)
    _syscall(BPF_PROG_ATTACH, attr, "cannot attach the device filter to the cgroup (BPF_PROG_ATTACH)")


def detach(cgroup_fd: int, prog_fd: int) -> None:
    attr = _attr("=IIII", cgroup_fd, prog_fd, BPF_CGROUP_DEVICE, 0)
    _syscall(BPF_PROG_DETACH, attr, "cannot detach a device filter from the cgroup (BPF_PROG_DETACH)")


def query(cgroup_fd: int) -> list[int]:
    """Ids of the device programs attached directly to the cgroup."""
    ids = (ctypes.c_uint32 * 64)()
    # target_fd, attach_type, query_flags, attach_flags, prog_ids, prog_cnt
    attr = _attr("=IIIIQI", cgroup_fd, BPF_CGROUP_DEVICE, 0, 0, ctypes.addressof(ids), len(ids))
    _syscall(BPF_PROG_QUERY, attr, "cannot list the cgroup's device filters (BPF_PROG_QUERY)")
    (count,) = struct.unpack_from("=I", attr, 24)
    return [int(ids[i]) for i in range(min(count, len(ids)))]


def prog_fd_by_id(prog_id: int) -> int:
    attr = _attr("=I", prog_id)
    return _syscall(BPF_PROG_GET_FD_BY_ID, attr, f"cannot open BPF program {prog_id} (BPF_PROG_GET_FD_BY_ID)")
