"""Docker's container security defaults as pure functions: the capability set and the seccomp profile.

* :func:`effective_capabilities` applies ``--cap-add`` / ``--cap-drop`` / ``--privileged`` to Docker's 14
  default capabilities with Docker's rules (``ALL``, names with or without ``CAP_``, any case).
* :func:`from_docker_profile` turns a profile in Docker's file format (what ``--security-opt
  seccomp=file.json`` sends) into the ``linux.seccomp`` of config.json for one container, the way dockerd
  does: ``archMap`` is narrowed to the host's architecture and its compatible ones, and entries whose
  ``includes`` / ``excludes`` (capabilities in the bounding set, architecture, minimum kernel) do not hold
  are left out. :func:`default_profile` does the same with Docker's default profile (seccomp_default).

``seccomp=unconfined`` (and ``--privileged``, which implies it) means no ``linux.seccomp`` at all: that is
the caller's choice. Nothing here does I/O; the host's architecture and kernel release come from uname(2)
unless the caller passes them.
"""

from __future__ import annotations

from ketch.common.errors import InvalidArgument
from ketch.spec import seccomp_default
from ketch.spec.capabilities import CAPABILITIES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

__all__ = [
    "ACTIONS",
    "ARCHITECTURES",
    "DEFAULT_CAPABILITIES",
    "FLAGS",
    "OPERATORS",
    "default_profile",
    "docker_arch",
    "effective_capabilities",
    "from_docker_profile",
    "normalize_capabilities",
]

#: moby's oci.DefaultCapabilities(), in its order.
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
)  # fmt: skip

_ALL = "ALL"


def _go_quote(text: str) -> str:
    """``text`` as Go's %q prints it (for the simple strings capability names are)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def normalize_capabilities(names: Iterable[str], field: str = "CapAdd") -> list[str]:
    """Upper-case ``names`` and add the ``CAP_`` prefix; ``ALL`` stays as it is. Unknown names raise
    InvalidArgument with dockerd's message (``invalid CapAdd: unknown capability: "CAP_FOO"``)."""
    out: list[str] = []
    for name in names:
        if not isinstance(name, str):
            raise InvalidArgument(f"invalid {field}: unknown capability: {name!r}")
        cap = name.upper()
        if cap != _ALL and not cap.startswith("CAP_"):
            cap = "CAP_" + cap
        if cap != _ALL and cap not in CAPABILITIES:
            raise InvalidArgument(f"invalid {field}: unknown capability: {_go_quote(cap)}")
        out.append(cap)
    return out


def effective_capabilities(cap_add: Iterable[str], cap_drop: Iterable[str], privileged: bool) -> list[str]:
    """The container's capabilities (``CAP_*`` names, no duplicates) from HostConfig's CapAdd, CapDrop and
    Privileged. Both lists are checked even for a privileged container, as dockerd checks them on create."""
    adds = normalize_capabilities(cap_add, "CapAdd")
    drops = normalize_capabilities(cap_drop, "CapDrop")
    every = list(CAPABILITIES)  # in capability-number order
    if privileged:
        return every
    if not adds and not drops:
        return list(DEFAULT_CAPABILITIES)
    if _ALL in adds:  # everything except what is dropped; "ALL" in drops then drops nothing by name
        caps = [cap for cap in every if cap not in drops]
    elif _ALL in drops:  # nothing but what is added
        caps = adds
    else:
        caps = [cap for cap in DEFAULT_CAPABILITIES if cap not in drops] + adds
    return list(dict.fromkeys(caps))


# --- names the OCI runtime spec defines for linux.seccomp ------------------------------------------------

ACTIONS = frozenset({
    "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY",
})  # fmt: skip
OPERATORS = frozenset({
    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
})  # fmt: skip
FLAGS = frozenset({"SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"})

# Docker (Go) architecture name -> OCI architecture. Docker's ``arches`` filters use the Go names.
_OCI_ARCH: dict[str, str] = {
    "amd64": "SCMP_ARCH_X86_64", "x86": "SCMP_ARCH_X86", "x32": "SCMP_ARCH_X32", "arm64": "SCMP_ARCH_AARCH64",
    "arm": "SCMP_ARCH_ARM", "mips": "SCMP_ARCH_MIPS", "mips64": "SCMP_ARCH_MIPS64",
    "mips64n32": "SCMP_ARCH_MIPS64N32", "mipsel": "SCMP_ARCH_MIPSEL", "mipsel64": "SCMP_ARCH_MIPSEL64",
    "mipsel64n32": "SCMP_ARCH_MIPSEL64N32", "ppc": "SCMP_ARCH_PPC", "ppc64": "SCMP_ARCH_PPC64",
    "ppc64le": "SCMP_ARCH_PPC64LE", "s390": "SCMP_ARCH_S390", "s390x": "SCMP_ARCH_S390X",
    "parisc": "SCMP_ARCH_PARISC", "parisc64": "SCMP_ARCH_PARISC64", "riscv64": "SCMP_ARCH_RISCV64",
    "loong64": "SCMP_ARCH_LOONGARCH64",
}  # fmt: skip
ARCHITECTURES = frozenset(_OCI_ARCH.values())
# uname(2) machine names that differ from the Go name.
_MACHINES: dict[str, str] = {
    "x86_64": "amd64", "i386": "x86", "i486": "x86", "i586": "x86", "i686": "x86", "386": "x86",
    "aarch64": "arm64", "armv6l": "arm", "armv7l": "arm", "armv8l": "arm", "mips64el": "mipsel64",
    "loongarch64": "loong64",
}  # fmt: skip

_ERRNO_MAX = 0xFFFF  # SECCOMP_RET_DATA: the errno a filter returns is 16 bits
_U64 = (1 << 64) - 1
_MAX_ARGS = 6


def docker_arch(arch: str | None = None) -> str:
    """Docker's name (Go's GOARCH spelling) for ``arch``: a uname machine (``x86_64``), a Go name
    (``amd64``) or an OCI name (``SCMP_ARCH_X86_64``); None means this host."""
    if arch is None:
        import os

        arch = os.uname().machine
    if arch in _OCI_ARCH:
        return arch
    if arch in _MACHINES:
        return _MACHINES[arch]
    for name, oci in _OCI_ARCH.items():
        if oci == arch:
            return name
    raise InvalidArgument(f"seccomp: unknown architecture {arch!r} (expected a machine name such as x86_64)")


def _host_kernel() -> tuple[int, int]:
    import os

    return _kernel_release(os.uname().release)


def _kernel_release(release: str) -> tuple[int, int]:
    """(version, major) from a release string such as ``6.1.0-18-amd64``."""
    parts = release.split(".", 2)
    numbers: list[int] = []
    for part in parts[:2]:
        digits = ""
        for ch in part:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            raise InvalidArgument(f"seccomp: cannot read a kernel version from {release!r}")
        numbers.append(int(digits))
    if len(numbers) != 2:
        raise InvalidArgument(f"seccomp: cannot read a kernel version from {release!r}")
    return numbers[0], numbers[1]


# --- reading Docker's profile format -----------------------------------------------------------------------

_PREFIX = "Decoding seccomp profile failed"


def _fail(where: str, problem: str) -> InvalidArgument:
    return InvalidArgument(f"{_PREFIX}: {where}: {problem}" if where else f"{_PREFIX}: {problem}")


def _show(value: object) -> str:
    if isinstance(value, str):
        return _go_quote(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return repr(value)


def _fields(obj: object, where: str, known: tuple[str, ...]) -> dict[str, Any]:
    """The ``known`` keys of a JSON object; like Go's decoder, a key matches case-insensitively when no key
    matches exactly, unknown keys are ignored and null counts as absent."""
    if not isinstance(obj, dict):
        raise _fail(where or "profile", f"must be an object, got {_show(obj)}")
    out: dict[str, Any] = {}
    folded = {str(key).lower(): key for key in obj}
    for name in known:
        key = name if name in obj else folded.get(name.lower())
        if key is not None and obj[key] is not None:
            out[name] = obj[key]
    return out


def _string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise _fail(where, f"must be a string, got {_show(value)}")
    return value


def _strings(value: object, where: str) -> list[str]:
    if not isinstance(value, list):
        raise _fail(where, f"must be an array of strings, got {_show(value)}")
    return [_string(item, f"{where}[{i}]") for i, item in enumerate(value)]


def _uint(value: object, where: str, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise _fail(where, f"must be an integer from 0 to {limit}, got {_show(value)}")
    return value


def _named(value: object, where: str, names: frozenset[str], what: str) -> str:
    name = _string(value, where)
    if name not in names:
        raise _fail(where, f"unknown {what} {_show(name)}")
    return name


def _min_kernel(value: object, where: str) -> tuple[int, int] | None:
    """Docker's ``"<kernel>.<major>"`` (``"4.8"``); an empty string means no minimum."""
    text = _string(value, where)
    if not text:
        return None
    parts = text.split(".")
    if len(parts) != 2 or not all(part.isdigit() and int(part) < 256 for part in parts):
        raise _fail(where, f'invalid kernel version {_show(text)}, expected "<kernel>.<major>"')
    version = (int(parts[0]), int(parts[1]))
    if version == (0, 0):
        raise _fail(where, f"invalid kernel version {_show(text)}: version cannot be 0.0")
    return version


class _Filter:
    """An entry's ``includes`` or ``excludes``."""

    __slots__ = ("arches", "caps", "min_kernel")

    def __init__(self, value: object, where: str) -> None:
        fields = _fields(value, where, ("caps", "arches", "minKernel"))
        self.caps = _strings(fields.get("caps", []), f"{where}.caps")
        self.arches = _strings(fields.get("arches", []), f"{where}.arches")
        self.min_kernel = (
            _min_kernel(fields["minKernel"], f"{where}.minKernel") if "minKernel" in fields else None
        )


class _Conditions:
    """What one container offers the filters: bounding capabilities, architecture, kernel (read lazily)."""

    def __init__(self, caps: Iterable[str], arch: str, kernel: tuple[int, int] | None) -> None:
        self.caps = set(_cap_names(caps))
        self.arch = arch
        self._kernel = kernel

    @property
    def kernel(self) -> tuple[int, int]:
        if self._kernel is None:
            self._kernel = _host_kernel()
        return self._kernel

    def keeps(self, includes: _Filter | None, excludes: _Filter | None) -> bool:
        """dockerd's rule: leave the entry out if any exclusion holds or any inclusion does not."""
        if excludes is not None:
            if self.arch in excludes.arches or any(cap in self.caps for cap in excludes.caps):
                return False
            if excludes.min_kernel is not None and self.kernel >= excludes.min_kernel:
                return False
        if includes is not None:
            if includes.arches and self.arch not in includes.arches:
                return False
            if not all(cap in self.caps for cap in includes.caps):
                return False
            if includes.min_kernel is not None and self.kernel < includes.min_kernel:
                return False
        return True


def _cap_names(caps: Iterable[str]) -> list[str]:
    """The container's capabilities as OCI spells them (config.json may be lenient about case and prefix)."""
    out = []
    for cap in caps:
        name = cap.upper()
        out.append(name if name.startswith("CAP_") else "CAP_" + name)
    return out


def _arg(value: object, where: str) -> dict[str, Any]:
    fields = _fields(value, where, ("index", "value", "valueTwo", "op"))
    if "op" not in fields:
        raise _fail(f"{where}.op", "is required")
    arg: dict[str, Any] = {
        "index": _uint(fields.get("index", 0), f"{where}.index", _MAX_ARGS - 1),
        "value": _uint(fields.get("value", 0), f"{where}.value", _U64),
    }
    value_two = _uint(fields.get("valueTwo", 0), f"{where}.valueTwo", _U64)
    if value_two:
        arg["valueTwo"] = value_two
    arg["op"] = _named(fields["op"], f"{where}.op", OPERATORS, "operator")
    return arg


_SYSCALL_KEYS = ("name", "names", "action", "errnoRet", "args", "comment", "includes", "excludes")


def _syscall(value: object, where: str) -> tuple[dict[str, Any], _Filter | None, _Filter | None]:
    """One ``syscalls[]`` entry checked and put in OCI form, with its filters."""
    fields = _fields(value, where, _SYSCALL_KEYS)
    name = _string(fields.get("name", ""), f"{where}.name")
    names = _strings(fields.get("names", []), f"{where}.names")
    if name and names:
        raise _fail(
            where, "'name' and 'names' were specified in the seccomp profile, use either 'name' or 'names'"
        )
    if name:
        names = [name]
    if not names:
        raise _fail(f"{where}.names", "must name at least one syscall")
    for i, syscall in enumerate(names):
        if not syscall:
            raise _fail(f"{where}.names[{i}]", "must not be empty")
    if "action" not in fields:
        raise _fail(f"{where}.action", "is required")
    call: dict[str, Any] = {
        "names": names,
        "action": _named(fields["action"], f"{where}.action", ACTIONS, "action"),
    }
    if "errnoRet" in fields:
        call["errnoRet"] = _uint(fields["errnoRet"], f"{where}.errnoRet", _ERRNO_MAX)
    if "args" in fields:
        raw_args = fields["args"]
        if not isinstance(raw_args, list):
            raise _fail(f"{where}.args", f"must be an array, got {_show(raw_args)}")
        args = [_arg(arg, f"{where}.args[{i}]") for i, arg in enumerate(raw_args)]
        if args:
            call["args"] = args
    if "comment" in fields:
        _string(fields["comment"], f"{where}.comment")
    includes = _Filter(fields["includes"], f"{where}.includes") if "includes" in fields else None
    excludes = _Filter(fields["excludes"], f"{where}.excludes") if "excludes" in fields else None
    return call, includes, excludes


def _arch_map(value: object) -> list[tuple[str, list[str]]]:
    if not isinstance(value, list):
        raise _fail("archMap", f"must be an array, got {_show(value)}")
    out = []
    for i, entry in enumerate(value):
        where = f"archMap[{i}]"
        fields = _fields(entry, where, ("architecture", "subArchitectures"))
        if "architecture" not in fields:
            raise _fail(f"{where}.architecture", "is required")
        arch = _named(fields["architecture"], f"{where}.architecture", ARCHITECTURES, "architecture")
        subs = _strings(fields.get("subArchitectures", []), f"{where}.subArchitectures")
        for j, sub in enumerate(subs):
            _named(sub, f"{where}.subArchitectures[{j}]", ARCHITECTURES, "architecture")
        out.append((arch, subs))
    return out


_PROFILE_KEYS = (
    "defaultAction", "defaultErrnoRet", "architectures", "archMap", "flags", "listenerPath", "listenerMetadata",
    "syscalls",
)  # fmt: skip


def _load(text_or_obj: str | bytes | Mapping[str, Any]) -> object:
    if not isinstance(text_or_obj, str | bytes | bytearray):
        return text_or_obj
    from ketch.common.fastjson import loads

    try:
        return loads(text_or_obj)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{_PREFIX}: {exc}") from None


def from_docker_profile(
    text_or_obj: str | bytes | Mapping[str, Any],
    capabilities: Iterable[str],
    arch: str | None = None,
    *,
    kernel: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """``linux.seccomp`` for a container with bounding set ``capabilities`` on ``arch`` (default: this
    host) from a profile in Docker's format, given as JSON text or as the parsed object.

    A profile with neither ``defaultAction`` nor ``syscalls`` turns seccomp off, as in Docker: the result
    is then ``{}``, which the runtime takes as "no filter". Malformed input raises InvalidArgument naming
    the field (``Decoding seccomp profile failed: syscalls[2].action: unknown action "SCMP_ACT_FOO"``).
    ``kernel`` is (version, major) for ``minKernel`` filters; by default the running kernel's.
    """
    fields = _fields(_load(text_or_obj), "", _PROFILE_KEYS)
    raw_calls = fields.get("syscalls", [])
    if not isinstance(raw_calls, list):
        raise _fail("syscalls", f"must be an array, got {_show(raw_calls)}")
    # check every entry up front: whether a profile is valid must not depend on the container
    calls = [_syscall(call, f"syscalls[{i}]") for i, call in enumerate(raw_calls)]
    if fields.get("defaultAction") == "":  # Go cannot tell an empty string from an absent one
        del fields["defaultAction"]
    if "defaultAction" not in fields:
        if not calls:
            return {}
        raise _fail("defaultAction", "is required")
    out: dict[str, Any] = {
        "defaultAction": _named(fields["defaultAction"], "defaultAction", ACTIONS, "action")
    }
    if "defaultErrnoRet" in fields:
        out["defaultErrnoRet"] = _uint(fields["defaultErrnoRet"], "defaultErrnoRet", _ERRNO_MAX)

    architectures = [
        _named(a, f"architectures[{i}]", ARCHITECTURES, "architecture")
        for i, a in enumerate(_strings(fields.get("architectures", []), "architectures"))
    ]
    arch_map = _arch_map(fields.get("archMap", []))
    if architectures and arch_map:
        raise _fail("", "'architectures' and 'archMap' were specified in the seccomp profile, "
                        "use either 'architectures' or 'archMap'")  # fmt: skip
    go_arch = docker_arch(arch)
    native = _OCI_ARCH[go_arch]
    for main, subs in arch_map:
        if main == native:
            architectures = [main, *subs]
            break
    if architectures:
        out["architectures"] = architectures
    if "flags" in fields:
        flags = [
            _named(f, f"flags[{i}]", FLAGS, "flag") for i, f in enumerate(_strings(fields["flags"], "flags"))
        ]
        if flags:
            out["flags"] = flags
    for key in ("listenerPath", "listenerMetadata"):
        if key in fields and _string(fields[key], key):
            out[key] = fields[key]

    conditions = _Conditions(capabilities, go_arch, kernel)
    out["syscalls"] = [call for call, includes, excludes in calls if conditions.keeps(includes, excludes)]
    return out


def default_profile(
    capabilities: Iterable[str], arch: str | None = None, *, kernel: tuple[int, int] | None = None
) -> dict[str, Any]:
    """``linux.seccomp`` from Docker's default profile for a container with bounding set ``capabilities``:
    EPERM for everything not allowed, the allowances of each capability it holds, clone without namespace
    flags and clone3 answering ENOSYS unless it holds CAP_SYS_ADMIN."""
    return from_docker_profile(seccomp_default.docker_profile(), capabilities, arch, kernel=kernel)
