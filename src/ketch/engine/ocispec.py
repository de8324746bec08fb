"""A container's OCI runtime config (config.json), built from its record the way moby's daemon/oci_linux.go does.

Docker's defaults for every container: the 14 default capabilities, Docker's seccomp profile, masked and
read-only /proc and /sys paths, the default device nodes and device cgroup rules, a private /dev/shm of
ShmSize, and the container's /etc/hosts, /etc/hostname and /etc/resolv.conf bind-mounted from its directory.
``--privileged`` lifts all of that (every capability, no seccomp, no masking, every host device).

Pure apart from reading the rootfs' /etc/passwd and /etc/group (users.py), the host's device nodes for
``--device`` and ``--privileged``, ketchd's own capability bounding set (a privileged container gets every
capability ketchd may hand on, not more) and creating a missing WorkingDir in the mounted rootfs, as dockerd
does before every start.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ketch.common.errors import InvalidArgument
from ketch.engine.model import ContainerRecord
from ketch.engine.users import resolve_user
from ketch.runtime.paths import secure_join
from ketch.spec import seccomp_profile
from ketch.spec.capabilities import CAPABILITIES
from ketch.spec.signals import parse_signal

__all__ = ["SpecInputs", "build_process", "build_spec", "container_env"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INIT_IN_CONTAINER = "/sbin/docker-init"
MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)  # fmt: skip
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
# moby's default device cgroup rules: mknod of anything, then the default nodes, the ptys and /dev/net/tun
_DEVICE_RULES = (
    ("c", None, None, "m"), ("b", None, None, "m"), ("c", 1, 3, "rwm"), ("c", 1, 8, "rwm"), ("c", 1, 7, "rwm"),
    ("c", 5, 0, "rwm"), ("c", 1, 5, "rwm"), ("c", 1, 9, "rwm"), ("c", 5, 1, "rwm"), ("c", 136, None, "rwm"),
    ("c", 5, 2, "rwm"), ("c", 10, 200, "rwm"),
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class SpecInputs:
    """What the spec needs besides the record: where things are on the host."""

    rootfs: str  # the mounted snapshot
    container_dir: str  # holds hostname, hosts, resolv.conf
    cgroup_parent: str = "/ketch"
    init_path: str = ""  # the host's docker-init/tini for --init; empty: --init is refused
    netns_path: str = ""  # join this network namespace (container:<x> mode)
    host_network: bool = False
    pid_ns_path: str = ""  # join this pid namespace (pid container:<x> mode)
    ipc_ns_path: str = ""
    seccomp_text: str = ""  # the content of a ``seccomp=<file>`` profile, read by the caller
    link_env: tuple[str, ...] = ()  # the --link variables (engine/links.py)
    hostname: str = ""  # instead of the config's (network mode container:<x> takes x's)


def container_env(record: ContainerRecord, hostname: str, linked: Sequence[str] = ()) -> list[str]:
    """moby CreateDaemonEnvironment: PATH (unless set), HOSTNAME, TERM for a tty, the --link variables, then
    the config's Env."""
    env = list(record.config.env or ())
    keys = {entry.partition("=")[0] for entry in env}
    base = [] if "PATH" in keys else [f"PATH={DEFAULT_PATH}"]
    base.append(f"HOSTNAME={hostname}")
    if record.config.tty:
        base.append("TERM=xterm")
    merged: dict[str, str] = {}
    for entry in [*base, *linked, *env]:
        merged[entry.partition("=")[0]] = entry
    return list(merged.values())


def _bounding_set() -> int | None:
    """ketchd's capability bounding set (CapBnd in /proc/self/status); None when it cannot be read."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _grantable(caps: list[str]) -> list[str]:
    """``caps`` less those ketchd does not hold itself: asking the kernel for them fails the start with
    EPERM (a host or sandbox that drops, say, CAP_SYS_RESOURCE from everything). moby's "all capabilities"
    is the daemon's bounding set in the same way."""
    mask = _bounding_set()
    if mask is None:
        return caps
    return [cap for cap in caps if mask >> CAPABILITIES[cap] & 1]


def _capabilities(caps: list[str]) -> dict[str, list[str]]:
    return {"bounding": caps, "effective": caps, "permitted": caps, "inheritable": []}


def build_process(
    record: ContainerRecord,
    rootfs: str,
    *,
    args: list[str],
    env: list[str],
    user: str,
    cwd: str,
    tty: bool,
    privileged: bool = False,
) -> dict[str, Any]:
    """An OCI ``process`` for the container's init or for an exec in it (exec passes its own args and env)."""
    host = record.host_config
    who = resolve_user(rootfs, user, host.group_add or ())
    if privileged or host.privileged:
        caps = _grantable(seccomp_profile.effective_capabilities((), (), True))
    else:
        caps = seccomp_profile.effective_capabilities(host.cap_add or (), host.cap_drop or (), False)
        if any(cap.upper() == "ALL" for cap in host.cap_add or ()):
            caps = _grantable(caps)
    if not any(entry.startswith("HOME=") for entry in env):
        env = [*env, f"HOME={who.home}"]
    process: dict[str, Any] = {
        "terminal": tty,
        # the primary group leads the supplementary ones, so that it cannot be dropped with setgroups(2)
        # (moby's fix for CVE-2022-36109); ``id`` in the container shows it under groups=
        "user": {"uid": who.uid, "gid": who.gid, "additionalGids": [who.gid, *who.additional_gids]},
        "args": args,
        "env": env,
        "cwd": cwd or "/",
        "capabilities": _capabilities(caps),
        "noNewPrivileges": _no_new_privileges(host.security_opt or ()),
    }
    if tty and host.console_size != (0, 0):
        process["consoleSize"] = {"height": host.console_size[0], "width": host.console_size[1]}
    return process


def _no_new_privileges(opts: tuple[str, ...]) -> bool:
    value = False
    for opt in opts:
        key, sep, rest = opt.partition("=") if "=" in opt else opt.partition(":")
        if key == "no-new-privileges":
            value = not sep or rest in ("1", "t", "T", "TRUE", "true", "True")
    return value


def _seccomp_choice(opts: tuple[str, ...]) -> str | None:
    """``unconfined``, ``builtin`` (the default profile) or None for a profile file's content."""
    choice = "builtin"
    for opt in opts:
        key, sep, rest = opt.partition("=") if "=" in opt else opt.partition(":")
        if key == "seccomp" and sep:
            choice = rest
    return choice


def _args(record: ContainerRecord, init: bool) -> list[str]:
    args = [*(record.config.entrypoint or ()), *(record.config.cmd or ())]
    if not args:
        raise InvalidArgument("No command specified")
    return [INIT_IN_CONTAINER, "--", *args] if init else args


def _mounts(record: ContainerRecord, inputs: SpecInputs) -> list[dict[str, Any]]:
    host = record.host_config
    sys_opts = ["nosuid", "noexec", "nodev"] + ([] if host.privileged else ["ro"])
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_opts},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
    ]  # fmt: skip
    if host.ipc_mode not in ("host",) and not host.ipc_mode.startswith("container:"):
        size = host.shm_size or 64 << 20
        mounts.append({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                       "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={size}"]})  # fmt: skip
    for name in ("resolv.conf", "hostname", "hosts"):
        path = os.path.join(inputs.container_dir, name)
        if os.path.exists(path):
            opts = ["rbind", "rprivate"] + (["ro"] if host.readonly_rootfs else [])
            mounts.append({"destination": f"/etc/{name}", "type": "bind", "source": path, "options": opts})
    for bind in host.binds or ():
        mounts.append(_bind_mount(bind))
    for dest, options in (host.tmpfs or {}).items():
        opts = ["nosuid", "nodev", "noexec"] + [o for o in options.split(",") if o]
        mounts.append({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": opts})
    if host.init:
        if not inputs.init_path:
            raise InvalidArgument(
                "--init requires a docker-init or tini binary on the host, and none was found"
            )
        mounts.append({"destination": INIT_IN_CONTAINER, "type": "bind", "source": inputs.init_path,
                       "options": ["bind", "ro"]})  # fmt: skip
    return mounts


def _bind_mount(bind: str) -> dict[str, Any]:
    """``-v /host:/ctr[:opts]``; named volumes belong to the volume issue and are refused clearly."""
    parts = bind.split(":")
    if len(parts) < 2 or len(parts) > 3:
        raise InvalidArgument(f"invalid volume specification: '{bind}'")
    source, dest = parts[0], parts[1]
    opts = parts[2].split(",") if len(parts) == 3 else []
    if not source.startswith("/"):
        raise InvalidArgument(f"named volumes are not supported yet: '{bind}'")
    if not dest.startswith("/"):
        raise InvalidArgument(
            f"invalid mount config: invalid mount path: '{dest}' mount path must be absolute"
        )
    if not os.path.exists(source):
        os.makedirs(source, exist_ok=True)  # docker creates a missing bind source directory
    options = ["rbind"]
    options.append("ro" if "ro" in opts else "rw")
    propagation = next((o for o in opts if o in ("private", "rprivate", "shared", "rshared", "slave", "rslave")),
                       "rprivate")  # fmt: skip
    options.append(propagation)
    return {"destination": dest, "type": "bind", "source": source, "options": options}


def _device_rules(record: ContainerRecord) -> list[dict[str, Any]]:
    if record.host_config.privileged:
        return [{"allow": True, "access": "rwm"}]
    rules: list[dict[str, Any]] = [{"allow": False, "access": "rwm"}]
    for kind, major, minor, access in _DEVICE_RULES:
        rule: dict[str, Any] = {"allow": True, "type": kind, "access": access}
        if major is not None:
            rule["major"] = major
        if minor is not None:
            rule["minor"] = minor
        rules.append(rule)
    return rules


def _host_device(path: str, in_container: str, permissions: str) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InvalidArgument(f"error gathering device information while adding custom device \"{path}\": "
                              f"{exc.strerror.lower() if exc.strerror else exc}") from None  # fmt: skip
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        raise InvalidArgument(f"error gathering device information while adding custom device \"{path}\": "
                              "not a device node")  # fmt: skip
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    device = {"path": in_container, "type": kind, "major": major, "minor": minor,
              "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}  # fmt: skip
    rule = {"allow": True, "type": kind, "major": major, "minor": minor, "access": permissions or "rwm"}
    return device, rule


def _privileged_devices() -> list[dict[str, Any]]:
    """Every device node of the host's /dev (top level and one level down), as --privileged gives."""
    out = []
    for root, dirs, files in os.walk("/dev"):
        if root.count("/") > 2 or root.startswith(("/dev/pts", "/dev/shm", "/dev/mqueue")):
            dirs[:] = []
            continue
        for name in files:
            path = os.path.join(root, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) and name not in (
                "console",
                "ptmx",
                "tty",
            ):
                out.append(_host_device(path, path, "rwm")[0])
    return out


def _resources(record: ContainerRecord) -> dict[str, Any]:
    res = record.host_config.resources
    out: dict[str, Any] = {"devices": _device_rules(record)}
    memory: dict[str, Any] = {}
    if res.memory:
        memory["limit"] = res.memory
    if res.memory_reservation:
        memory["reservation"] = res.memory_reservation
    if res.memory_swap and res.memory:
        memory["swap"] = res.memory_swap
    if res.memory_swappiness is not None:
        memory["swappiness"] = res.memory_swappiness
    if res.oom_kill_disable:
        memory["disableOOMKiller"] = True
    if memory:
        out["memory"] = memory
    cpu: dict[str, Any] = {}
    if res.cpu_shares:
        cpu["shares"] = res.cpu_shares
    if res.nano_cpus:
        cpu["period"] = 100_000
        cpu["quota"] = res.nano_cpus * 100_000 // 10**9
    if res.cpu_period:
        cpu["period"] = res.cpu_period
    if res.cpu_quota:
        cpu["quota"] = res.cpu_quota
    if res.cpuset_cpus:
        cpu["cpus"] = res.cpuset_cpus
    if res.cpuset_mems:
        cpu["mems"] = res.cpuset_mems
    if cpu:
        out["cpu"] = cpu
    if res.pids_limit is not None and res.pids_limit > 0:
        out["pids"] = {"limit": res.pids_limit}
    if res.blkio_weight:
        out["blockIO"] = {"weight": res.blkio_weight}
    return out


def _namespaces(record: ContainerRecord, inputs: SpecInputs) -> list[dict[str, Any]]:
    host = record.host_config
    ns: list[dict[str, Any]] = [{"type": "mount"}]
    if inputs.netns_path:
        ns.append({"type": "network", "path": inputs.netns_path})
    elif not inputs.host_network:
        ns.append({"type": "network"})
    if inputs.pid_ns_path:
        ns.append({"type": "pid", "path": inputs.pid_ns_path})
    elif host.pid_mode != "host":
        ns.append({"type": "pid"})
    if inputs.ipc_ns_path:
        ns.append({"type": "ipc", "path": inputs.ipc_ns_path})
    elif host.ipc_mode != "host":
        ns.append({"type": "ipc"})
    if host.uts_mode != "host" and not inputs.host_network:
        ns.append({"type": "uts"})
    if host.cgroupns_mode != "host":
        ns.append({"type": "cgroup"})
    return ns


def _make_working_dir(rootfs: str, working_dir: str) -> None:
    """dockerd's SetupWorkingDirectory: a WorkingDir missing from the image is created (0755, root's) before
    the container starts, resolved inside the rootfs; one that exists as a file is refused."""
    if not working_dir or working_dir == "/":
        return
    path = secure_join(rootfs, working_dir)
    try:
        os.makedirs(path, mode=0o755, exist_ok=True)
    except FileExistsError:
        raise InvalidArgument(f"Cannot mkdir: {working_dir} is not a directory") from None
    except OSError as exc:
        if os.path.exists(path) and not os.path.isdir(path):
            raise InvalidArgument(f"Cannot mkdir: {working_dir} is not a directory") from None
        raise InvalidArgument(f"Cannot mkdir: {working_dir}: {exc.strerror}") from None


def build_spec(record: ContainerRecord, inputs: SpecInputs) -> dict[str, Any]:
    """The whole config.json for ``record``'s container (and its WorkingDir made in the mounted rootfs)."""
    config, host = record.config, record.host_config
    _make_working_dir(inputs.rootfs, config.working_dir)
    if host.network_mode == "host" and not inputs.host_network:
        inputs = replace(inputs, host_network=True)
    hostname = inputs.hostname or config.hostname or record.id[:12]
    process = build_process(
        record, inputs.rootfs,
        args=_args(record, bool(host.init)),
        env=container_env(record, hostname, inputs.link_env),
        user=config.user, cwd=config.working_dir, tty=config.tty,
    )  # fmt: skip
    rlimits = [
        {"type": "RLIMIT_" + u.name.upper(), "soft": u.soft, "hard": u.hard}
        for u in host.resources.ulimits or ()
    ]
    if rlimits:
        process["rlimits"] = rlimits
    if host.oom_score_adj:
        process["oomScoreAdj"] = host.oom_score_adj
    linux: dict[str, Any] = {
        "namespaces": _namespaces(record, inputs),
        "resources": _resources(record),
        "cgroupsPath": f"{inputs.cgroup_parent.rstrip('/')}/{record.id}",
    }
    if host.resources.cgroup_parent:
        linux["cgroupsPath"] = f"/{host.resources.cgroup_parent.strip('/')}/{record.id}"
    if host.sysctls:
        linux["sysctl"] = dict(host.sysctls)
    if host.privileged:
        linux["devices"] = _privileged_devices()
    else:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
        devices = []
        for dev in host.resources.devices or ():
            node, rule = _host_device(dev.path_on_host, dev.path_in_container or dev.path_on_host,
                                      dev.cgroup_permissions)  # fmt: skip
            devices.append(node)
            linux["resources"]["devices"].append(rule)
        if devices:
            linux["devices"] = devices
        choice = _seccomp_choice(host.security_opt or ())
        caps = process["capabilities"]["bounding"]
        if choice == "builtin":
            linux["seccomp"] = seccomp_profile.default_profile(caps)
        elif choice != "unconfined":
            if not inputs.seccomp_text:
                raise InvalidArgument(f"opening seccomp profile ({choice}) failed: the profile is empty")
            linux["seccomp"] = seccomp_profile.from_docker_profile(inputs.seccomp_text, caps)
    spec: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": inputs.rootfs, "readonly": host.readonly_rootfs},
        "mounts": _mounts(record, inputs),
        "linux": linux,
    }
    if host.uts_mode != "host" and not inputs.host_network:
        spec["hostname"] = hostname
        if config.domainname:
            spec["domainname"] = config.domainname
    return spec


def stop_signal(record: ContainerRecord) -> int:
    """The signal ``docker stop`` sends first: the config's StopSignal (image's merged in at create), else TERM."""
    return parse_signal(record.config.stop_signal) if record.config.stop_signal else 15
