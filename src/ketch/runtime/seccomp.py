"""``linux.seccomp`` of config.json (OCI runtime spec 1.1) turned into a loaded seccomp filter.

The translation follows runc's (libcontainer/seccomp and its patchbpf):

* no ``defaultAction`` and no ``syscalls``: seccomp is off;
* ``SCMP_ACT_ERRNO`` / ``SCMP_ACT_TRACE`` return ``errnoRet`` (``defaultErrnoRet`` for the default
  action), EPERM when it is absent; ``SCMP_ACT_KILL`` is ``SCMP_ACT_KILL_THREAD``;
* syscall names libseccomp does not know are skipped (the profile may be newer than the library), and so
  are rules whose action is the default action (libseccomp refuses them);
* a rule whose args compare the same argument twice is split into one rule per comparison (libseccomp
  cannot AND two checks of one argument); otherwise all comparisons form one rule;
* absent ``flags`` mean SECCOMP_FILTER_FLAG_SPEC_ALLOW when the host supports it; an explicit list is
  taken as it is; the no_new_privs attribute is cleared because the runtime sets no_new_privs itself;
* when the default action refuses syscalls, a stub is put in front of libseccomp's program so that
  syscalls newer than every syscall the profile names get ENOSYS rather than the default action. That
  lets libcs fall back from syscalls the profile predates (clone3, faccessat2, ...) as they do on an
  older kernel.

``SCMP_ACT_NOTIFY`` (a seccomp agent at ``listenerPath``) is not implemented and raises Unsupported.
"""

from __future__ import annotations

import os

from ketch.common import fastjson
from ketch.common.errors import InvalidArgument, KetchError, SystemFailure, Unsupported
from ketch.sys import seccomp as _sc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ketch.sys.seccomp import Backend, Condition, FilterHandle

__all__ = [
    "ACTIONS",
    "ARCHITECTURES",
    "FLAGS",
    "OPERATORS",
    "Profile",
    "install",
    "load",
    "parse",
    "validate",
]

_WHERE = "linux.seccomp"
_EPERM = 1
_ENOSYS = 38
_MAX_ARGS = 6  # a syscall has at most six arguments
_U64 = (1 << 64) - 1
_OPTIMIZE_ABOVE = 32  # runc: libseccomp's binary-tree layout only pays off (and only works) for longer lists

#: OCI action name -> libseccomp action, without the errno / trace datum.
ACTIONS: dict[str, int] = {
    "SCMP_ACT_KILL": _sc.ACT_KILL,
    "SCMP_ACT_KILL_THREAD": _sc.ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": _sc.ACT_KILL_PROCESS,
    "SCMP_ACT_TRAP": _sc.ACT_TRAP,
    "SCMP_ACT_ERRNO": _sc.ACT_ERRNO_BASE,
    "SCMP_ACT_TRACE": _sc.ACT_TRACE_BASE,
    "SCMP_ACT_ALLOW": _sc.ACT_ALLOW,
    "SCMP_ACT_LOG": _sc.ACT_LOG,
    "SCMP_ACT_NOTIFY": _sc.ACT_NOTIFY,
}

OPERATORS: dict[str, int] = {
    "SCMP_CMP_NE": _sc.CMP_NE,
    "SCMP_CMP_LT": _sc.CMP_LT,
    "SCMP_CMP_LE": _sc.CMP_LE,
    "SCMP_CMP_EQ": _sc.CMP_EQ,
    "SCMP_CMP_GE": _sc.CMP_GE,
    "SCMP_CMP_GT": _sc.CMP_GT,
    "SCMP_CMP_MASKED_EQ": _sc.CMP_MASKED_EQ,
}

#: OCI architecture name -> libseccomp's name for it (seccomp_arch_resolve_name).
ARCHITECTURES: dict[str, str] = {
    "SCMP_ARCH_X86": "x86",
    "SCMP_ARCH_X86_64": "x86_64",
    "SCMP_ARCH_X32": "x32",
    "SCMP_ARCH_ARM": "arm",
    "SCMP_ARCH_AARCH64": "aarch64",
    "SCMP_ARCH_MIPS": "mips",
    "SCMP_ARCH_MIPS64": "mips64",
    "SCMP_ARCH_MIPS64N32": "mips64n32",
    "SCMP_ARCH_MIPSEL": "mipsel",
    "SCMP_ARCH_MIPSEL64": "mipsel64",
    "SCMP_ARCH_MIPSEL64N32": "mipsel64n32",
    "SCMP_ARCH_PPC": "ppc",
    "SCMP_ARCH_PPC64": "ppc64",
    "SCMP_ARCH_PPC64LE": "ppc64le",
    "SCMP_ARCH_S390": "s390",
    "SCMP_ARCH_S390X": "s390x",
    "SCMP_ARCH_PARISC": "parisc",
    "SCMP_ARCH_PARISC64": "parisc64",
    "SCMP_ARCH_RISCV64": "riscv64",
    "SCMP_ARCH_LOONGARCH64": "loongarch64",
}

_FLAG_TSYNC = "SECCOMP_FILTER_FLAG_TSYNC"
_FLAG_LOG = "SECCOMP_FILTER_FLAG_LOG"
_FLAG_SPEC_ALLOW = "SECCOMP_FILTER_FLAG_SPEC_ALLOW"

#: OCI flag name -> (libseccomp attribute, seccomp(2) flag).
FLAGS: dict[str, tuple[int, int]] = {
    _FLAG_TSYNC: (_sc.ATTR_CTL_TSYNC, _sc.FILTER_FLAG_TSYNC),
    _FLAG_LOG: (_sc.ATTR_CTL_LOG, _sc.FILTER_FLAG_LOG),
    _FLAG_SPEC_ALLOW: (_sc.ATTR_CTL_SSB, _sc.FILTER_FLAG_SPEC_ALLOW),
}


class Rule:
    """One syscall name of a ``syscalls[]`` entry, with its action and comparisons resolved."""

    __slots__ = ("action", "conditions", "name", "where")

    def __init__(self, name: str, action: int, conditions: list[Condition], where: str) -> None:
        self.name = name
        self.action = action
        self.conditions = conditions
        self.where = where

    def __repr__(self) -> str:
        return f"Rule({self.name!r}, {self.action:#x}, {self.conditions!r})"


class Profile:
    """A checked ``linux.seccomp``: libseccomp values, no libseccomp needed to build it."""

    __slots__ = ("architectures", "default_action", "flags", "rules")

    def __init__(
        self, default_action: int, architectures: list[str], flags: list[str] | None, rules: list[Rule]
    ) -> None:
        self.default_action = default_action
        self.architectures = architectures  # OCI names, in order
        self.flags = flags  # None: not given (SPEC_ALLOW when supported)
        self.rules = rules


# --- checking ------------------------------------------------------------------------------------------


def _show(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _uint(value: object, where: str, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise InvalidArgument(f"{where}: must be an integer from 0 to {limit}, got {_show(value)}")
    return value


def _list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidArgument(f"{where}: must be an array, got {_show(value)}")
    return value


def _action(obj: dict[str, Any], key: str, errno_key: str, where: str) -> int:
    name = obj.get(key)
    base = ACTIONS.get(name) if isinstance(name, str) else None
    if base is None:
        raise InvalidArgument(f"{where}.{key}: unknown action {_show(name)}")
    if base == _sc.ACT_NOTIFY:
        raise Unsupported(
            f"{where}.{key}: SCMP_ACT_NOTIFY is not supported: ketch does not implement seccomp user "
            "notification (listenerPath) yet"
        )
    if base not in (_sc.ACT_ERRNO_BASE, _sc.ACT_TRACE_BASE):
        return base
    ret = obj.get(errno_key)
    datum = _EPERM if ret is None else _uint(ret, f"{where}.{errno_key}", _sc.ACT_DATA_MASK)
    return base | datum


def _conditions(args: object, where: str) -> list[Condition]:
    out: list[Condition] = []
    for i, arg in enumerate(_list(args, where)):
        here = f"{where}[{i}]"
        if not isinstance(arg, dict):
            raise InvalidArgument(f"{here}: must be an object, got {_show(arg)}")
        index = _uint(arg.get("index"), f"{here}.index", _MAX_ARGS - 1)
        op = OPERATORS.get(arg["op"]) if isinstance(arg.get("op"), str) else None
        if op is None:
            raise InvalidArgument(f"{here}.op: unknown operator {_show(arg.get('op'))}")
        value = _uint(arg.get("value"), f"{here}.value", _U64)
        value_two = _uint(arg.get("valueTwo", 0), f"{here}.valueTwo", _U64)
        out.append((index, op, value, value_two))
    return out


def parse(seccomp: dict[str, Any]) -> Profile | None:
    """Check ``linux.seccomp`` and resolve its names; None when it asks for no filter at all."""
    if not isinstance(seccomp, dict):
        raise InvalidArgument(f"{_WHERE}: must be an object, got {_show(seccomp)}")
    syscalls = _list(seccomp.get("syscalls") or [], f"{_WHERE}.syscalls")
    if not seccomp.get("defaultAction") and not syscalls:
        return None  # runc: nothing to enforce
    default = _action(seccomp, "defaultAction", "defaultErrnoRet", _WHERE)

    archs: list[str] = []
    for i, arch in enumerate(_list(seccomp.get("architectures") or [], f"{_WHERE}.architectures")):
        if not isinstance(arch, str) or arch not in ARCHITECTURES:
            raise InvalidArgument(f"{_WHERE}.architectures[{i}]: unknown architecture {_show(arch)}")
        archs.append(arch)

    flags: list[str] | None = None
    if seccomp.get("flags") is not None:
        flags = []
        for i, flag in enumerate(_list(seccomp["flags"], f"{_WHERE}.flags")):
            if not isinstance(flag, str) or flag not in FLAGS:
                raise InvalidArgument(f"{_WHERE}.flags[{i}]: unknown seccomp flag {_show(flag)}")
            flags.append(flag)

    rules: list[Rule] = []
    for i, call in enumerate(syscalls):
        where = f"{_WHERE}.syscalls[{i}]"
        if not isinstance(call, dict):
            raise InvalidArgument(f"{where}: must be an object, got {_show(call)}")
        action = _action(call, "action", "errnoRet", where)
        conditions = _conditions(call.get("args") or [], f"{where}.args")
        for j, name in enumerate(_list(call.get("names") or [], f"{where}.names")):
            if not isinstance(name, str) or not name:
                raise InvalidArgument(f"{where}.names[{j}]: must be a syscall name, got {_show(name)}")
            rules.append(Rule(name, action, list(conditions), where))
    return Profile(default, archs, flags, rules)


def validate(seccomp: dict[str, Any]) -> None:
    """Reject a ``linux.seccomp`` that load() would refuse for its content (no libseccomp needed)."""
    parse(seccomp)


# --- building and loading ------------------------------------------------------------------------------


def _with_context(where: str, exc: KetchError) -> KetchError:
    """The same kind of error, its message prefixed by where in config.json it came from."""
    if isinstance(exc, SystemFailure):
        return SystemFailure(f"{where}: {exc}", errno=exc.errno, path=exc.path)
    return type(exc)(f"{where}: {exc}")


def _rule_splits(conditions: list[Condition]) -> list[list[Condition]]:
    """libseccomp ANDs a rule's comparisons but refuses two on one argument: then one rule each (runc)."""
    indexes = [cond[0] for cond in conditions]
    if len(set(indexes)) < len(indexes):
        return [[cond] for cond in conditions]
    return [conditions]


def _wants_enosys_stub(default_action: int) -> bool:
    """The stub only matters when the default refuses; an ENOSYS default already says "no such call"."""
    if default_action in (_sc.ACT_ALLOW, _sc.ACT_LOG, _sc.act_errno(_ENOSYS)):
        return False
    # TRACE counts as allowing: a tracer is expected to handle syscalls it does not know itself
    return default_action & ~_sc.ACT_DATA_MASK != _sc.ACT_TRACE_BASE


def _build(seccomp: dict[str, Any], backend: Backend) -> tuple[FilterHandle, int, bytes] | None:
    """Translate ``linux.seccomp`` into a libseccomp filter: (filter, seccomp(2) flags, ENOSYS stub or b"").
    None when the profile turns seccomp off. The caller releases the filter."""
    profile = parse(seccomp)
    if profile is None:
        return None
    arch_tokens: list[tuple[str, int]] = []
    for i, arch in enumerate(profile.architectures):
        token = backend.arch_resolve(ARCHITECTURES[arch])
        if token is None:
            raise Unsupported(f"{_WHERE}.architectures[{i}]: this libseccomp does not know {_show(arch)}")
        arch_tokens.append((arch, token))
    filt = backend.new_filter(profile.default_action)
    try:
        kernel_flags = _configure(filt, profile, arch_tokens)
        for rule in profile.rules:
            _add_rule(filt, backend, rule, profile.default_action)
        stub = b""
        if _wants_enosys_stub(profile.default_action):
            stub = enosys_stub(_last_syscalls(backend, profile, arch_tokens))
    except BaseException:
        filt.release()
        raise
    return filt, kernel_flags, stub


def install(seccomp: dict[str, Any], backend: Backend) -> None:
    """Build the filter ``linux.seccomp`` describes through `backend` and load it into the calling thread."""
    built = _build(seccomp, backend)
    if built is None:
        return
    filt, kernel_flags, stub = built
    try:
        if stub:
            backend.load_program(stub + filt.export_bpf(), kernel_flags)
        else:
            filt.load()
    finally:
        filt.release()


def compile_program(
    seccomp: dict[str, Any], backend: Backend | None = None, *, cache_dir: str = ""
) -> tuple[bytes, int] | None:
    """Build the filter and return it as (classic BPF program, seccomp(2) flags) without loading it.

    A container's init compiles before pivot_root, while libseccomp can still be loaded from the host,
    and installs the program with :func:`load_compiled` as late as it must.

    With ``cache_dir`` the program is kept there, keyed by the profile, libseccomp's version, the machine and
    the kernel: Docker's default profile has some 360 rules and compiling it is about half of ``create``,
    while every container of an engine uses one of a handful of profiles.
    """
    path = _cache_path(seccomp, cache_dir) if cache_dir and backend is None else ""
    if path:
        try:
            with open(path, "rb") as f:
                data = f.read()
            return data[4:], int.from_bytes(data[:4], "little")
        except OSError:
            pass
    built = _build(seccomp, backend or _sc.LibSeccomp())
    if built is None:
        return None
    filt, kernel_flags, stub = built
    try:
        program = stub + filt.export_bpf()
    finally:
        filt.release()
    if path:
        _store(path, kernel_flags.to_bytes(4, "little") + program)
    return program, kernel_flags


def _cache_path(seccomp: dict[str, Any], cache_dir: str) -> str:
    import _sha256  # type: ignore[import-not-found]  # hashlib would load OpenSSL: 4 ms more

    uname = os.uname()
    key = f"{_sc.version()}|{uname.machine}|{uname.release}|".encode() + fastjson.dumps(seccomp).encode()
    return os.path.join(cache_dir, _sha256.sha256(key).hexdigest())


def _store(path: str, data: bytes) -> None:
    """Write atomically (a concurrent create reads a whole program or none); a failure only costs speed."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def load_compiled(compiled: tuple[bytes, int] | None) -> None:
    """Install what :func:`compile_program` returned into the calling thread."""
    if compiled is not None:
        _sc.load_program(*compiled)


def load(seccomp: dict[str, Any]) -> None:
    """Load ``linux.seccomp`` into the calling thread with libseccomp.

    The caller has already set no_new_privs, or still holds CAP_SYS_ADMIN; nothing may run between this
    and exec that the filter would refuse.
    """
    install(seccomp, _sc.LibSeccomp())


def _configure(filt: FilterHandle, profile: Profile, arch_tokens: list[tuple[str, int]]) -> int:
    """Architectures and attributes; returns the seccomp(2) flags that match them."""
    for i, (arch, token) in enumerate(arch_tokens):
        try:
            filt.add_arch(token)
        except KetchError as exc:
            raise _with_context(f"{_WHERE}.architectures[{i}] ({arch})", exc) from None
    kernel_flags = 0
    if profile.flags is None:
        attr, bit = FLAGS[_FLAG_SPEC_ALLOW]
        try:
            filt.set_attr(attr, 1)
            kernel_flags |= bit
        except KetchError:
            pass  # a default, not a request: hosts without SPEC_ALLOW just go without
    else:
        for i, flag in enumerate(profile.flags):
            attr, bit = FLAGS[flag]
            try:
                filt.set_attr(attr, 1)
            except KetchError as exc:
                raise Unsupported(
                    f"{_WHERE}.flags[{i}]: {flag} is not supported on this host ({exc})"
                ) from None
            kernel_flags |= bit
    if len(profile.rules) > _OPTIMIZE_ABOVE:
        try:
            filt.set_attr(_sc.ATTR_CTL_OPTIMIZE, 2)
        except KetchError:
            pass  # only an optimisation
    try:
        # report the kernel's errno from seccomp_load rather than libseccomp's generic ECANCELED
        filt.set_attr(_sc.ATTR_API_SYSRAWRC, 1)
    except KetchError:
        pass
    filt.set_attr(_sc.ATTR_CTL_NNP, 0)
    return kernel_flags


def _add_rule(filt: FilterHandle, backend: Backend, rule: Rule, default_action: int) -> None:
    if rule.action == default_action:
        return  # redundant, and libseccomp refuses it
    nr = backend.syscall_resolve(rule.name)
    if nr is None:
        return  # unknown to this libseccomp: the kernel is unlikely to have it either
    for conditions in _rule_splits(rule.conditions):
        try:
            filt.add_rule(rule.action, nr, conditions)
        except KetchError as exc:
            raise _with_context(f"{rule.where} ({rule.name})", exc) from None


# --- the ENOSYS stub -----------------------------------------------------------------------------------

# classic BPF opcodes (linux/filter.h)
_LD_W_ABS = 0x20
_JMP_JA = 0x05
_JMP_JEQ_K = 0x15
_JMP_JGT_K = 0x25
_JMP_JSET_K = 0x45
_RET_K = 0x06
# struct seccomp_data: int nr; __u32 arch; ...
_OFF_NR = 0
_OFF_ARCH = 4
_X32_SYSCALL_BIT = 0x40000000


def _audit_arch(token: int) -> int:
    """The AUDIT_ARCH value the kernel puts in seccomp_data.arch for a libseccomp architecture token."""
    return _sc.ARCH_X86_64 if token == _sc.ARCH_X32 else token


def _last_syscalls(
    backend: Backend, profile: Profile, arch_tokens: list[tuple[str, int]]
) -> list[tuple[int, int]]:
    """(architecture token, highest syscall number the profile names on it), for each listed architecture."""
    seen: set[int] = set()
    out: list[tuple[int, int]] = []
    for _arch, token in arch_tokens:
        if token in seen:
            continue
        seen.add(token)
        highest = 0
        for rule in profile.rules:
            nr = backend.syscall_resolve(rule.name, token)
            if nr is not None and nr > highest:
                highest = nr
        if highest:
            out.append((token, highest))
    return out


class _Asm:
    """A tiny classic-BPF assembler whose jumps name labels; all targets lie ahead, as BPF requires."""

    def __init__(self) -> None:
        self.code: list[tuple[int, int | str, int | str, int | str]] = []
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def emit(self, op: int, k: int | str = 0, jt: int | str = 0, jf: int | str = 0) -> None:
        self.code.append((op, jt, jf, k))

    def assemble(self) -> bytes:
        import struct

        out = bytearray()
        for pc, (op, jt, jf, k) in enumerate(self.code):
            # JA jumps by k (32 bits); conditional jumps by jt / jf (8 bits each)
            k_abs = self._offset(pc, k, 0xFFFFFFFF) if op == _JMP_JA else self._value(k)
            out += struct.pack("=HBBI", op, self._offset(pc, jt, 0xFF), self._offset(pc, jf, 0xFF), k_abs)
        return bytes(out)

    @staticmethod
    def _value(k: int | str) -> int:
        if isinstance(k, str):
            raise ValueError(f"BPF label {k} used as an operand")
        return k

    def _offset(self, pc: int, target: int | str, limit: int) -> int:
        if isinstance(target, int):
            return target
        offset = self.labels[target] - pc - 1
        if not 0 <= offset <= limit:
            raise ValueError(f"BPF jump from {pc} to {target} out of range")
        return offset


def enosys_stub(last_syscalls: list[tuple[int, int]]) -> bytes:
    """BPF to prepend to libseccomp's program: ENOSYS for syscalls above the highest one named per arch.

    `last_syscalls` holds (libseccomp architecture token, highest syscall number) pairs. The stub falls
    through into the filter that follows it for every other syscall, and for architectures not listed.
    x32 shares AUDIT_ARCH_X86_64 with x86_64 and is told apart by bit 30 of the syscall number; on s390
    syscall 0 is where unknown syscall numbers end up, so it gets ENOSYS too.
    """
    groups: dict[int, dict[int, int]] = {}
    for token, highest in last_syscalls:
        groups.setdefault(_audit_arch(token), {})[token] = highest
    if not groups:
        return b""
    asm = _Asm()
    asm.emit(_LD_W_ABS, _OFF_ARCH)
    for audit in groups:
        asm.emit(_JMP_JEQ_K, audit, jt=f"arch_{audit:x}")
    asm.emit(_JMP_JA, "filter")
    for audit, per_token in groups.items():
        asm.label(f"arch_{audit:x}")
        asm.emit(_LD_W_ABS, _OFF_NR)
        if audit in (_sc.ARCH_S390, _sc.ARCH_S390X):
            asm.emit(_JMP_JEQ_K, 0, jt="enosys")
        native, x32 = per_token.get(audit), per_token.get(_sc.ARCH_X32)
        if native is not None and x32 is None:
            if audit == _sc.ARCH_X86_64:  # x32 calls are not this profile's business: let the filter judge
                asm.emit(_JMP_JSET_K, _X32_SYSCALL_BIT, jt="filter")
            asm.emit(_JMP_JGT_K, native, jt="enosys", jf="filter")
        elif native is None and x32 is not None:
            asm.emit(_JMP_JSET_K, _X32_SYSCALL_BIT, jf="filter")
            asm.emit(_JMP_JGT_K, x32, jt="enosys", jf="filter")
        elif native is not None and x32 is not None:
            asm.emit(_JMP_JSET_K, _X32_SYSCALL_BIT, jt=f"x32_{audit:x}")
            asm.emit(_JMP_JGT_K, native, jt="enosys", jf="filter")
            asm.label(f"x32_{audit:x}")
            asm.emit(_JMP_JGT_K, x32, jt="enosys", jf="filter")
    asm.label("enosys")
    asm.emit(_RET_K, _sc.act_errno(_ENOSYS))
    asm.label("filter")
    return asm.assemble()
