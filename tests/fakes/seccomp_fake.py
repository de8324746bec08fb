"""Test helpers for seccomp: a recording stand-in for ketch.sys.seccomp.LibSeccomp and a classic-BPF
interpreter that runs seccomp programs (ours or libseccomp's) on a made-up seccomp_data."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from ketch.common.errors import InvalidArgument, SystemFailure
from ketch.sys import seccomp as sc

ARCH_AARCH64 = 0xC00000B7  # AUDIT_ARCH_AARCH64

# A few real syscall numbers per architecture (from the kernel's tables) for the fake to resolve.
SYSCALLS: dict[int, dict[str, int]] = {
    sc.ARCH_X86_64: {
        "read": 0, "write": 1, "close": 3, "getpid": 39, "kill": 62, "mkdir": 83, "mkdirat": 258,
        "getrandom": 318, "memfd_create": 319, "clone3": 435, "socketcall": -101,
    },
    sc.ARCH_X86: {
        "read": 3, "write": 4, "close": 6, "getpid": 20, "kill": 37, "mkdir": 39, "mkdirat": 296,
        "getrandom": 355, "memfd_create": 356, "clone3": 435, "socketcall": 102,
    },
    ARCH_AARCH64: {
        "read": 63, "write": 64, "close": 57, "getpid": 172, "kill": 129, "mkdirat": 34,
        "getrandom": 278, "memfd_create": 279, "clone3": 435,
    },
}  # fmt: skip
SYSCALLS[sc.ARCH_X32] = {name: nr | 0x40000000 for name, nr in SYSCALLS[sc.ARCH_X86_64].items() if nr >= 0}
ARCH_NAMES = {
    "x86_64": sc.ARCH_X86_64,
    "x86": sc.ARCH_X86,
    "x32": sc.ARCH_X32,
    "aarch64": ARCH_AARCH64,
    "s390x": sc.ARCH_S390X,
}  # no "loongarch64": like libseccomp 2.5


class FakeFilter:
    def __init__(self, backend: FakeBackend, default_action: int) -> None:
        self.backend = backend
        backend.calls.append(("init", default_action))

    def add_arch(self, arch: int) -> None:
        self.backend.calls.append(("arch", arch))

    def set_attr(self, attr: int, value: int) -> None:
        if attr in self.backend.unsupported_attrs:
            raise SystemFailure(f"seccomp: setting attribute {attr}: Operation not supported", errno=95)
        self.backend.calls.append(("attr", attr, value))

    def add_rule(
        self, action: int, syscall: int, conditions: Sequence[tuple[int, int, int, int]] = ()
    ) -> None:
        indexes = [c[0] for c in conditions]
        if len(set(indexes)) != len(indexes):  # what libseccomp does too
            raise InvalidArgument("seccomp: adding rule: Invalid argument")
        self.backend.calls.append(("rule", action, syscall, tuple(conditions)))

    def load(self) -> None:
        self.backend.calls.append(("load",))

    def export_bpf(self) -> bytes:
        self.backend.calls.append(("export",))
        return self.backend.exported

    def release(self) -> None:
        self.backend.calls.append(("release",))


class FakeBackend:
    """Records what the translation layer asks of libseccomp, in order."""

    def __init__(self, native: int = sc.ARCH_X86_64, unsupported_attrs: Sequence[int] = ()) -> None:
        self.native = native
        self.unsupported_attrs = set(unsupported_attrs)
        self.calls: list[tuple[Any, ...]] = []
        # stands for libseccomp's program: "allow everything"
        self.exported = struct.pack("=HBBI", 0x06, 0, 0, sc.ACT_ALLOW)

    def new_filter(self, default_action: int) -> FakeFilter:
        return FakeFilter(self, default_action)

    def arch_native(self) -> int:
        return self.native

    def arch_resolve(self, name: str) -> int | None:
        return ARCH_NAMES.get(name)

    def syscall_resolve(self, name: str, arch: int = 0) -> int | None:
        return SYSCALLS.get(arch or self.native, {}).get(name)

    def load_program(self, program: bytes, flags: int) -> None:
        self.calls.append(("load_program", program, flags))


# --- classic BPF, as the kernel runs a seccomp filter ----------------------------------------------------


def seccomp_data(nr: int, arch: int, args: Sequence[int] = (), ip: int = 0) -> bytes:
    full = [*args, *([0] * (6 - len(args)))]
    return struct.pack("=iIQ6Q", nr, arch, ip, *full)


def run_bpf(program: bytes, nr: int, arch: int, args: Sequence[int] = ()) -> int:
    """The value a seccomp program returns for one syscall (32-bit loads in host byte order)."""
    assert program and len(program) % 8 == 0, "not a list of sock_filter"
    insns = [struct.unpack_from("=HBBI", program, off) for off in range(0, len(program), 8)]
    data = seccomp_data(nr, arch, args)
    a = x = 0
    mem = [0] * 16
    pc = 0
    mask = 0xFFFFFFFF
    while True:
        assert pc < len(insns), "ran off the end of the program"
        code, jt, jf, k = insns[pc]
        pc += 1
        cls = code & 0x07
        src_x = code & 0x08
        if cls == 0x00:  # LD
            mode = code & 0xE0
            if mode == 0x20:
                a = struct.unpack_from("=I", data, k)[0]
            elif mode == 0x00:
                a = k
            elif mode == 0x60:
                a = mem[k]
            elif mode == 0x80:
                a = len(data)
            else:
                raise AssertionError(f"LD mode {code:#x}")
        elif cls == 0x01:  # LDX
            mode = code & 0xE0
            x = {0x00: k, 0x60: mem[k] if k < 16 else 0, 0x80: len(data)}[mode]
        elif cls == 0x02:
            mem[k] = a
        elif cls == 0x03:
            mem[k] = x
        elif cls == 0x04:  # ALU
            a = _alu(code & 0xF0, a, x if src_x else k) & mask
        elif cls == 0x05:  # JMP
            op = code & 0xF0
            v = x if src_x else k
            if op == 0x00:
                pc += k
                continue
            taken = {0x10: a == v, 0x20: a > v, 0x30: a >= v, 0x40: bool(a & v)}[op]
            pc += jt if taken else jf
        elif cls == 0x06:  # RET
            return a if code & 0x18 == 0x10 else k
        elif cls == 0x07:  # MISC
            if code & 0xF8 == 0x00:
                x = a
            else:
                a = x


def _alu(op: int, a: int, v: int) -> int:
    if op == 0x80:
        return -a
    return {
        0x00: int.__add__, 0x10: int.__sub__, 0x20: int.__mul__, 0x30: int.__floordiv__, 0x40: int.__or__,
        0x50: int.__and__, 0x60: int.__lshift__, 0x70: int.__rshift__, 0x90: int.__mod__, 0xA0: int.__xor__,
    }[op](a, v)  # fmt: skip
