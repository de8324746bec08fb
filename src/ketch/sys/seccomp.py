"""A thin ctypes binding to libseccomp (``libseccomp.so.2``), plus the raw seccomp(2) load.

The library is opened on first use, so importing this module costs nothing but its constants; a host
without libseccomp only fails (with :class:`Unsupported`) when a filter is actually needed. libseccomp
functions return a negative errno on failure: ``-EINVAL`` becomes :class:`InvalidArgument` (the caller
passed something libseccomp will not take), anything else :class:`SystemFailure`.

:class:`LibSeccomp` groups the functions the translation layer (``ketch.runtime.seccomp``) needs; the
``Backend`` / ``FilterHandle`` protocols describe that surface so tests can stand in a recording fake.
"""

from __future__ import annotations

import errno as _errno
import os

from ketch.common.errors import InvalidArgument, SystemFailure, Unsupported

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ctypes
    from collections.abc import Sequence
    from typing import Protocol

    #: One argument comparison: (argument index, SCMP_CMP_* operator, datum_a, datum_b).
    Condition = tuple[int, int, int, int]

    class FilterHandle(Protocol):
        def add_arch(self, arch: int) -> None: ...
        def set_attr(self, attr: int, value: int) -> None: ...
        def add_rule(self, action: int, syscall: int, conditions: Sequence[Condition] = ()) -> None: ...
        def load(self) -> None: ...
        def export_bpf(self) -> bytes: ...
        def release(self) -> None: ...

    class Backend(Protocol):
        def new_filter(self, default_action: int) -> FilterHandle: ...
        def arch_native(self) -> int: ...
        def arch_resolve(self, name: str) -> int | None: ...
        def syscall_resolve(self, name: str, arch: int = 0) -> int | None: ...
        def load_program(self, program: bytes, flags: int) -> None: ...


__all__ = [
    "LibSeccomp",
    "SeccompFilter",
    "api_level",
    "arch_native",
    "arch_resolve",
    "load_program",
    "syscall_resolve",
    "version",
]

LIBRARY = "libseccomp.so.2"

# Actions (seccomp.h); ERRNO and TRACE carry a 16-bit datum in their low bits.
ACT_KILL_THREAD = 0x00000000
ACT_KILL = ACT_KILL_THREAD
ACT_KILL_PROCESS = 0x80000000
ACT_TRAP = 0x00030000
ACT_ERRNO_BASE = 0x00050000
ACT_NOTIFY = 0x7FC00000
ACT_TRACE_BASE = 0x7FF00000
ACT_LOG = 0x7FFC0000
ACT_ALLOW = 0x7FFF0000
ACT_DATA_MASK = 0x0000FFFF


def act_errno(errno: int) -> int:
    return ACT_ERRNO_BASE | (errno & ACT_DATA_MASK)


def act_trace(msg: int) -> int:
    return ACT_TRACE_BASE | (msg & ACT_DATA_MASK)


# enum scmp_compare
CMP_NE = 1
CMP_LT = 2
CMP_LE = 3
CMP_EQ = 4
CMP_GE = 5
CMP_GT = 6
CMP_MASKED_EQ = 7

# enum scmp_filter_attr
ATTR_ACT_DEFAULT = 1
ATTR_ACT_BADARCH = 2
ATTR_CTL_NNP = 3
ATTR_CTL_TSYNC = 4
ATTR_API_TSKIP = 5
ATTR_CTL_LOG = 6
ATTR_CTL_SSB = 7
ATTR_CTL_OPTIMIZE = 8
ATTR_API_SYSRAWRC = 9

# Architecture tokens are the kernel's AUDIT_ARCH_* values, except x32 which libseccomp must tell apart
# from x86_64 (the kernel reports x32 as AUDIT_ARCH_X86_64 with bit 30 set in the syscall number).
ARCH_NATIVE = 0
ARCH_X86 = 0x40000003
ARCH_X86_64 = 0xC000003E
ARCH_X32 = 0x4000003E
ARCH_S390 = 0x00000016
ARCH_S390X = 0x80000016

# seccomp(2) / prctl(2) constants (linux/seccomp.h, linux/prctl.h)
FILTER_FLAG_TSYNC = 1
FILTER_FLAG_LOG = 2
FILTER_FLAG_SPEC_ALLOW = 4
_SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_MODE_FILTER = 2
_PR_SET_SECCOMP = 22

_NR_SCMP_ERROR = -1
_BPF_INSN_SIZE = 8  # sizeof(struct sock_filter)

_lib: ctypes.CDLL | None = None
_libc: ctypes.CDLL | None = None


def _load() -> ctypes.CDLL:
    """Open libseccomp and declare the prototypes used here (once per process)."""
    global _lib
    if _lib is not None:
        return _lib
    import ctypes

    try:
        lib = ctypes.CDLL(LIBRARY, use_errno=True)
    except OSError as exc:
        raise Unsupported(
            f"seccomp: cannot load {LIBRARY} ({exc}); install libseccomp (Debian: libseccomp2) "
            "to run containers with a seccomp profile"
        ) from None
    vp, u32, cint = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int
    protos: dict[str, tuple[object, list[object]]] = {
        "seccomp_init": (vp, [u32]),
        "seccomp_release": (None, [vp]),
        "seccomp_arch_add": (cint, [vp, u32]),
        "seccomp_arch_native": (u32, []),
        "seccomp_arch_resolve_name": (u32, [ctypes.c_char_p]),
        "seccomp_syscall_resolve_name": (cint, [ctypes.c_char_p]),
        "seccomp_syscall_resolve_name_arch": (cint, [u32, ctypes.c_char_p]),
        "seccomp_rule_add_array": (cint, [vp, u32, cint, ctypes.c_uint, ctypes.POINTER(_arg_cmp_type())]),
        "seccomp_attr_set": (cint, [vp, cint, u32]),
        "seccomp_attr_get": (cint, [vp, cint, ctypes.POINTER(u32)]),
        "seccomp_load": (cint, [vp]),
        "seccomp_export_bpf": (cint, [vp, cint]),
        "seccomp_api_get": (ctypes.c_uint, []),
        "seccomp_version": (ctypes.POINTER(_version_type()), []),
    }
    for name, (restype, argtypes) in protos.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            raise Unsupported(f"seccomp: {LIBRARY} has no {name}(); libseccomp >= 2.5 is needed") from None
        fn.restype = restype
        fn.argtypes = argtypes
    _lib = lib
    return lib


_struct_cache: dict[str, type[ctypes.Structure]] = {}


def _arg_cmp_type() -> type[ctypes.Structure]:
    """``struct scmp_arg_cmp``, built on first use so the module does not import ctypes."""
    cls = _struct_cache.get("arg_cmp")
    if cls is None:
        import ctypes

        class scmp_arg_cmp(ctypes.Structure):
            _fields_ = [
                ("arg", ctypes.c_uint),
                ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64),
            ]

        cls = _struct_cache["arg_cmp"] = scmp_arg_cmp
    return cls


def _version_type() -> type[ctypes.Structure]:
    cls = _struct_cache.get("version")
    if cls is None:
        import ctypes

        class scmp_version(ctypes.Structure):
            _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]

        cls = _struct_cache["version"] = scmp_version
    return cls


def _check(rc: int, what: str) -> None:
    """Turn libseccomp's negative-errno return into a typed error naming `what`."""
    if rc >= 0:
        return
    code = -rc
    detail = os.strerror(code)
    if code == _errno.EINVAL:
        raise InvalidArgument(f"seccomp: {what}: {detail}")
    raise SystemFailure(f"seccomp: {what}: {detail}", errno=code)


def version() -> tuple[int, int, int]:
    v = _load().seccomp_version().contents
    return (int(v.major), int(v.minor), int(v.micro))


def api_level() -> int:
    """libseccomp's API level (what the library and the running kernel support together)."""
    return int(_load().seccomp_api_get())


def arch_native() -> int:
    return int(_load().seccomp_arch_native())


def arch_resolve(name: str) -> int | None:
    """Token of a libseccomp architecture name ("x86_64", "aarch64", ...), None if unknown."""
    token = int(_load().seccomp_arch_resolve_name(name.encode()))
    return token or None


def syscall_resolve(name: str, arch: int = ARCH_NATIVE) -> int | None:
    """Number of syscall `name` on `arch` (negative for libseccomp's pseudo syscalls), None if unknown."""
    lib = _load()
    if arch == ARCH_NATIVE:
        nr = int(lib.seccomp_syscall_resolve_name(name.encode()))
    else:
        nr = int(lib.seccomp_syscall_resolve_name_arch(arch, name.encode()))
    return None if nr == _NR_SCMP_ERROR else nr


class SeccompFilter:
    """One ``scmp_filter_ctx``; release it (or use ``with``) when done."""

    def __init__(self, default_action: int) -> None:
        ctx = _load().seccomp_init(default_action)
        if not ctx:
            # seccomp_init only fails for an action the library or kernel does not support (or ENOMEM)
            raise InvalidArgument(f"seccomp: cannot create a filter with default action {default_action:#x}")
        self._ctx: int | None = ctx

    def _handle(self) -> int:
        if self._ctx is None:
            raise ValueError("seccomp filter already released")
        return self._ctx

    def __enter__(self) -> SeccompFilter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if self._ctx is not None:
            _load().seccomp_release(self._ctx)
            self._ctx = None

    def add_arch(self, arch: int) -> None:
        rc = int(_load().seccomp_arch_add(self._handle(), arch))
        if rc == -_errno.EEXIST:  # already there (the native one always is): nothing to do
            return
        _check(rc, f"adding architecture {arch:#x}")

    def set_attr(self, attr: int, value: int) -> None:
        _check(
            int(_load().seccomp_attr_set(self._handle(), attr, value)), f"setting attribute {attr} to {value}"
        )

    def get_attr(self, attr: int) -> int:
        import ctypes

        out = ctypes.c_uint32()
        _check(
            int(_load().seccomp_attr_get(self._handle(), attr, ctypes.byref(out))),
            f"reading attribute {attr}",
        )
        return int(out.value)

    def add_rule(self, action: int, syscall: int, conditions: Sequence[Condition] = ()) -> None:
        lib = _load()
        arg_cmp = _arg_cmp_type()
        array = (arg_cmp * len(conditions))(*(arg_cmp(*cond) for cond in conditions))
        rc = int(lib.seccomp_rule_add_array(self._handle(), action, syscall, len(conditions), array))
        _check(rc, f"adding rule for syscall {syscall} (action {action:#x}, {len(conditions)} conditions)")

    def load(self) -> None:
        """Load the filter into the calling thread (all threads with CTL_TSYNC)."""
        rc = int(_load().seccomp_load(self._handle()))
        if rc < 0:
            raise SystemFailure(f"seccomp: loading filter: {os.strerror(-rc)}", errno=-rc)

    def export_bpf_to(self, fd: int) -> None:
        _check(int(_load().seccomp_export_bpf(self._handle(), fd)), "exporting BPF")

    def export_bpf(self) -> bytes:
        """The filter as the kernel would get it: struct sock_filter[] in host byte order."""
        # A memfd rather than a pipe: large profiles export more than a pipe buffer holds.
        fd = os.memfd_create("ketch-seccomp-bpf", os.MFD_CLOEXEC)
        try:
            self.export_bpf_to(fd)
            size = os.lseek(fd, 0, os.SEEK_CUR)
            os.lseek(fd, 0, os.SEEK_SET)
            chunks: list[bytes] = []
            while size > 0:
                chunk = os.read(fd, size)
                if not chunk:
                    break
                chunks.append(chunk)
                size -= len(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)


def _load_libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def load_program(program: bytes, flags: int) -> None:
    """Install a classic-BPF seccomp program in the calling thread (seccomp(2), or prctl(2) without flags).

    Used for filters libseccomp generated and the runtime then patched (see ketch.runtime.seccomp).
    The caller must have set no_new_privs or hold CAP_SYS_ADMIN.
    """
    import ctypes

    if not program or len(program) % _BPF_INSN_SIZE:
        raise InvalidArgument(f"seccomp: BPF program of {len(program)} bytes is not a list of instructions")
    count = len(program) // _BPF_INSN_SIZE
    if count > 0xFFFF:
        raise InvalidArgument(f"seccomp: BPF program has {count} instructions, more than sock_fprog can hold")

    class sock_fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    buf = ctypes.create_string_buffer(program, len(program))
    prog = sock_fprog(count, ctypes.cast(buf, ctypes.c_void_p))
    libc = _load_libc()
    if flags:
        nr = syscall_resolve("seccomp")
        if nr is None or nr < 0:
            raise Unsupported("seccomp: this architecture has no seccomp(2) syscall; filter flags need it")
        libc.syscall.restype = ctypes.c_long
        rc = int(
            libc.syscall(
                ctypes.c_long(nr),
                ctypes.c_ulong(_SECCOMP_SET_MODE_FILTER),
                ctypes.c_ulong(flags),
                ctypes.byref(prog),
            )
        )
        what = f"seccomp(SECCOMP_SET_MODE_FILTER, flags={flags:#x})"
        if rc > 0 and flags & FILTER_FLAG_TSYNC:
            # with TSYNC a positive return is the id of a thread that could not be synchronised
            raise SystemFailure(f"seccomp: {what}: thread {rc} cannot be synchronised", errno=_errno.ESRCH)
    else:
        rc = int(
            libc.prctl(
                ctypes.c_int(_PR_SET_SECCOMP),
                ctypes.c_ulong(_SECCOMP_MODE_FILTER),
                ctypes.byref(prog),
                ctypes.c_ulong(0),
                ctypes.c_ulong(0),
            )
        )
        what = "prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)"
    if rc < 0:
        code = ctypes.get_errno()
        hint = " (set no_new_privs or keep CAP_SYS_ADMIN)" if code == _errno.EACCES else ""
        raise SystemFailure(f"seccomp: loading filter with {what}: {os.strerror(code)}{hint}", errno=code)


class LibSeccomp:
    """The real backend of ketch.runtime.seccomp: the functions above behind one object."""

    def new_filter(self, default_action: int) -> SeccompFilter:
        return SeccompFilter(default_action)

    def arch_native(self) -> int:
        return arch_native()

    def arch_resolve(self, name: str) -> int | None:
        return arch_resolve(name)

    def syscall_resolve(self, name: str, arch: int = ARCH_NATIVE) -> int | None:
        return syscall_resolve(name, arch)

    def load_program(self, program: bytes, flags: int) -> None:
        load_program(program, flags)
