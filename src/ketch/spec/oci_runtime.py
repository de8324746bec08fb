"""The OCI runtime specification's config.json and state, as plain dicts.

A bundle's config is kept as the dict that JSON gives (unknown fields survive a round trip, and nothing is
built at import time, which matters for a short-lived runtime). :func:`validate` checks it once, up front, and
raises :class:`InvalidArgument` naming the field, so later code may index it without re-checking types.
"""

from __future__ import annotations

from ketch.common.errors import InvalidArgument
from ketch.spec.capabilities import CAPABILITIES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "NAMESPACES", "OCI_VERSION", "RLIMITS", "default_spec", "parse_mount_options", "validate",
]  # fmt: skip

OCI_VERSION = "1.1.0"

# config.json namespace type -> the name of its file under /proc/<pid>/ns/.
NAMESPACES: dict[str, str] = {
    "pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts", "user": "user",
    "cgroup": "cgroup", "time": "time",
}  # fmt: skip

RLIMITS: dict[str, int] = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4, "RLIMIT_RSS": 5,
    "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10,
    "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}  # fmt: skip

HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")

# Mount option -> (clears, flag). Values from linux/mount.h; see sys.linux for the names.
_MOUNT_FLAGS: dict[str, tuple[bool, int]] = {
    "defaults": (False, 0), "ro": (False, 0x1), "rw": (True, 0x1), "nosuid": (False, 0x2), "suid": (True, 0x2),
    "nodev": (False, 0x4), "dev": (True, 0x4), "noexec": (False, 0x8), "exec": (True, 0x8),
    "sync": (False, 0x10), "async": (True, 0x10), "remount": (False, 0x20), "mand": (False, 0x40),
    "nomand": (True, 0x40), "dirsync": (False, 0x80), "nosymfollow": (False, 0x100), "symfollow": (True, 0x100),
    "noatime": (False, 0x400), "atime": (True, 0x400), "nodiratime": (False, 0x800), "diratime": (True, 0x800),
    "bind": (False, 0x1000), "rbind": (False, 0x1000 | 0x4000), "relatime": (False, 0x200000),
    "norelatime": (True, 0x200000), "strictatime": (False, 0x1000000), "nostrictatime": (True, 0x1000000),
    "lazytime": (False, 0x2000000), "nolazytime": (True, 0x2000000), "silent": (False, 0x8000),
    "loud": (True, 0x8000), "iversion": (False, 0x800000), "noiversion": (True, 0x800000),
}  # fmt: skip
_PROPAGATION: dict[str, int] = {
    "private": 0x40000, "rprivate": 0x40000 | 0x4000, "shared": 0x100000, "rshared": 0x100000 | 0x4000,
    "slave": 0x80000, "rslave": 0x80000 | 0x4000, "unbindable": 0x20000, "runbindable": 0x20000 | 0x4000,
}  # fmt: skip
# Options ketch understands that are neither kernel flags nor filesystem data.
_EXTENSIONS = frozenset(
    {
        "tmpcopyup",
        "rro",
        "rrw",
        "rnosuid",
        "rsuid",
        "rnodev",
        "rdev",
        "rnoexec",
        "rexec",
        "rnoatime",
        "ratime",
        "rnodiratime",
        "rdiratime",
        "rrelatime",
        "rnorelatime",
        "rstrictatime",
        "rnostrictatime",
        "rnosymfollow",
        "rsymfollow",
        "idmap",
        "ridmap",
    }
)


def parse_mount_options(options: list[str]) -> tuple[int, list[int], list[str], list[str]]:
    """Split mount options into (flags, propagation flags in order, filesystem data, ketch extensions)."""
    flags = 0
    propagation: list[int] = []
    data: list[str] = []
    extensions: list[str] = []
    for option in options:
        if option in _MOUNT_FLAGS:
            clear, flag = _MOUNT_FLAGS[option]
            flags = flags & ~flag if clear else flags | flag
        elif option in _PROPAGATION:
            propagation.append(_PROPAGATION[option])
        elif option in _EXTENSIONS:
            extensions.append(option)
        else:
            data.append(option)
    return flags, propagation, data, extensions


def mount_option_names() -> list[str]:
    return sorted([*_MOUNT_FLAGS, *_PROPAGATION, *_EXTENSIONS])


# -- validation -------------------------------------------------------------------------------------------


def _fail(where: str, problem: str) -> InvalidArgument:
    return InvalidArgument(f"config.json: {where}: {problem}")


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, "must be an object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(where, "must be an array")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _fail(where, "must be a string")
    return value


def _int(value: Any, where: str, *, minimum: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(where, "must be an integer")
    if minimum is not None and value < minimum:
        raise _fail(where, f"must be at least {minimum}, got {value}")
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(where, "must be true or false")
    return value


def _strings(value: Any, where: str) -> list[str]:
    items = _list(value, where)
    for i, item in enumerate(items):
        _str(item, f"{where}[{i}]")
    return items


def _abs_path(value: Any, where: str) -> str:
    path = _str(value, where)
    if not path.startswith("/"):
        raise _fail(where, f"{path!r} is not an absolute path")
    return path


def validate(config: Any, *, need_process: bool = True) -> dict[str, Any]:
    """Check ``config`` against the runtime spec; return it unchanged. Raise InvalidArgument on the first
    problem, naming the field (``config.json: linux.namespaces[1].type: unknown namespace type "foo"``)."""
    cfg = _obj(config, "top level")
    if "ociVersion" not in cfg:
        raise _fail("ociVersion", "is required")
    version = _str(cfg["ociVersion"], "ociVersion")
    if not version.startswith("1."):
        raise _fail("ociVersion", f"unsupported version {version!r} (ketch implements 1.x)")
    root = _obj(cfg.get("root"), "root") if "root" in cfg else None
    if root is None:
        raise _fail("root", "is required")
    if not _str(root.get("path"), "root.path"):
        raise _fail("root.path", "must not be empty")
    if "readonly" in root:
        _bool(root["readonly"], "root.readonly")
    if "process" in cfg:
        validate_process(cfg["process"], "process")
    elif need_process:
        raise _fail("process", "is required")
    for key in ("hostname", "domainname"):
        if key in cfg:
            _str(cfg[key], key)
    for i, mount in enumerate(_list(cfg.get("mounts", []), "mounts")):
        _validate_mount(mount, f"mounts[{i}]")
    if "hooks" in cfg:
        _validate_hooks(cfg["hooks"])
    if "annotations" in cfg:
        for key, value in _obj(cfg["annotations"], "annotations").items():
            _str(value, f"annotations[{key!r}]")
    if "linux" in cfg:
        _validate_linux(_obj(cfg["linux"], "linux"), cfg)
    return cfg


def validate_process(value: Any, where: str) -> dict[str, Any]:
    proc = _obj(value, where)
    args = _strings(proc.get("args"), f"{where}.args") if "args" in proc else []
    if not args or not args[0]:
        raise _fail(f"{where}.args", "must name the program to run")
    cwd = proc.get("cwd", "/")
    _abs_path(cwd, f"{where}.cwd")
    for i, item in enumerate(_strings(proc.get("env", []), f"{where}.env")):
        if "=" not in item:
            raise _fail(f"{where}.env[{i}]", f"{item!r} is not KEY=VALUE")
    for key in ("terminal", "noNewPrivileges"):
        if key in proc:
            _bool(proc[key], f"{where}.{key}")
    if "consoleSize" in proc:
        size = _obj(proc["consoleSize"], f"{where}.consoleSize")
        _int(size.get("height", 0), f"{where}.consoleSize.height", minimum=0)
        _int(size.get("width", 0), f"{where}.consoleSize.width", minimum=0)
    user = _obj(proc.get("user", {}), f"{where}.user")
    for key in ("uid", "gid", "umask"):
        if key in user:
            _int(user[key], f"{where}.user.{key}", minimum=0)
    for i, gid in enumerate(_list(user.get("additionalGids", []), f"{where}.user.additionalGids")):
        _int(gid, f"{where}.user.additionalGids[{i}]", minimum=0)
    caps = _obj(proc.get("capabilities", {}), f"{where}.capabilities")
    for kind, names in caps.items():
        if kind not in ("bounding", "effective", "permitted", "inheritable", "ambient"):
            raise _fail(f"{where}.capabilities", f"unknown capability set {kind!r}")
        for i, name in enumerate(_strings(names, f"{where}.capabilities.{kind}")):
            if name not in CAPABILITIES:
                raise _fail(f"{where}.capabilities.{kind}[{i}]", f"unknown capability {name!r}")
    seen: set[str] = set()
    for i, rlimit in enumerate(_list(proc.get("rlimits", []), f"{where}.rlimits")):
        at = f"{where}.rlimits[{i}]"
        kind = _str(_obj(rlimit, at).get("type"), f"{at}.type")
        if kind not in RLIMITS:
            raise _fail(f"{at}.type", f"unknown rlimit {kind!r}")
        if kind in seen:
            raise _fail(f"{at}.type", f"rlimit {kind!r} is set twice")
        seen.add(kind)
        soft = _int(rlimit.get("soft"), f"{at}.soft", minimum=0)
        hard = _int(rlimit.get("hard"), f"{at}.hard", minimum=0)
        if soft > hard:
            raise _fail(at, f"soft limit {soft} is above hard limit {hard}")
    if "oomScoreAdj" in proc:
        score = _int(proc["oomScoreAdj"], f"{where}.oomScoreAdj")
        if not -1000 <= score <= 1000:
            raise _fail(f"{where}.oomScoreAdj", f"{score} is outside -1000..1000")
    for key in ("apparmorProfile", "selinuxLabel"):
        if key in proc:
            _str(proc[key], f"{where}.{key}")
    return proc


def _validate_mount(value: Any, where: str) -> None:
    mount = _obj(value, where)
    dest = _str(mount.get("destination"), f"{where}.destination")
    if not dest:
        raise _fail(f"{where}.destination", "must not be empty")
    for key in ("type", "source"):
        if key in mount:
            _str(mount[key], f"{where}.{key}")
    _strings(mount.get("options", []), f"{where}.options")


def _validate_hooks(value: Any) -> None:
    hooks = _obj(value, "hooks")
    for kind, entries in hooks.items():
        if kind not in HOOK_KINDS:
            raise _fail("hooks", f"unknown hook kind {kind!r}")
        for i, hook in enumerate(_list(entries, f"hooks.{kind}")):
            at = f"hooks.{kind}[{i}]"
            _abs_path(_obj(hook, at).get("path"), f"{at}.path")
            _strings(hook.get("args", []), f"{at}.args")
            _strings(hook.get("env", []), f"{at}.env")
            if "timeout" in hook:
                _int(hook["timeout"], f"{at}.timeout", minimum=1)


def _validate_linux(linux: dict[str, Any], cfg: dict[str, Any]) -> None:
    kinds: set[str] = set()
    for i, ns in enumerate(_list(linux.get("namespaces", []), "linux.namespaces")):
        at = f"linux.namespaces[{i}]"
        kind = _str(_obj(ns, at).get("type"), f"{at}.type")
        if kind not in NAMESPACES:
            raise _fail(f"{at}.type", f"unknown namespace type {kind!r}")
        if kind in kinds:
            raise _fail(f"{at}.type", f"namespace {kind!r} is listed twice")
        kinds.add(kind)
        if "path" in ns:
            _abs_path(ns["path"], f"{at}.path")
    for key in ("uidMappings", "gidMappings"):
        for i, mapping in enumerate(_list(linux.get(key, []), f"linux.{key}")):
            at = f"linux.{key}[{i}]"
            for field in ("containerID", "hostID", "size"):
                _int(_obj(mapping, at).get(field), f"{at}.{field}", minimum=0)
    has_user = any(ns.get("type") == "user" and "path" not in ns for ns in linux.get("namespaces", []))
    if (linux.get("uidMappings") or linux.get("gidMappings")) and not has_user:
        raise _fail("linux.uidMappings", "mappings need a new user namespace in linux.namespaces")
    if has_user and not (linux.get("uidMappings") and linux.get("gidMappings")):
        raise _fail("linux.namespaces", "a new user namespace needs linux.uidMappings and linux.gidMappings")
    if cfg.get("hostname") and "uts" not in kinds:
        raise _fail("hostname", "setting the hostname needs a new uts namespace")
    for i, dev in enumerate(_list(linux.get("devices", []), "linux.devices")):
        at = f"linux.devices[{i}]"
        _abs_path(_obj(dev, at).get("path"), f"{at}.path")
        kind = _str(dev.get("type"), f"{at}.type")
        if kind not in ("c", "b", "u", "p"):
            raise _fail(f"{at}.type", f"unknown device type {kind!r}")
        if kind != "p":
            _int(dev.get("major"), f"{at}.major", minimum=0)
            _int(dev.get("minor"), f"{at}.minor", minimum=0)
        for field in ("fileMode", "uid", "gid"):
            if field in dev:
                _int(dev[field], f"{at}.{field}", minimum=0)
    for key in ("maskedPaths", "readonlyPaths"):
        for i, path in enumerate(_list(linux.get(key, []), f"linux.{key}")):
            _abs_path(path, f"linux.{key}[{i}]")
    for key, val in _obj(linux.get("sysctl", {}), "linux.sysctl").items():
        _str(val, f"linux.sysctl[{key!r}]")
    if "cgroupsPath" in linux:
        _str(linux["cgroupsPath"], "linux.cgroupsPath")
    if "resources" in linux:
        _obj(linux["resources"], "linux.resources")
    propagation = linux.get("rootfsPropagation")
    if propagation is not None and propagation not in _PROPAGATION:
        raise _fail("linux.rootfsPropagation", f"unknown propagation {propagation!r}")
    if "seccomp" in linux:
        _obj(linux["seccomp"], "linux.seccomp")


# -- the config that `ketch-runtime spec` writes ----------------------------------------------------------

_MASKED = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
]
_READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def default_spec(*, rootless: bool = False, uid: int = 0, gid: int = 0) -> dict[str, Any]:
    """The example config ``spec`` writes: the same container ``runc spec`` describes."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ]  # fmt: skip
    linux: dict[str, Any] = {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")],
        "maskedPaths": list(_MASKED),
        "readonlyPaths": list(_READONLY),
    }
    if rootless:
        # No new network namespace (an unprivileged user cannot configure one), sysfs bound from the host,
        # no device cgroup rules, and the caller mapped to root in a new user namespace.
        linux = {
            "uidMappings": [{"containerID": 0, "hostID": uid, "size": 1}],
            "gidMappings": [{"containerID": 0, "hostID": gid, "size": 1}],
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "cgroup", "user")],
            "maskedPaths": list(_MASKED),
            "readonlyPaths": list(_READONLY),
        }
        mounts[2]["options"] = [o for o in mounts[2]["options"] if o != "gid=5"]
        mounts[4]["options"] = ["rbind", "nosuid", "noexec", "nodev"]
        mounts[4].update(type="bind", source="/dev/mqueue")
        mounts[5] = {"destination": "/sys", "type": "none", "source": "/sys",
                     "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}  # fmt: skip
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "ketch",
        "mounts": mounts,
        "linux": linux,
    }
