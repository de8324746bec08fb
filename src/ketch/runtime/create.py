"""``create``: set up a container and leave its init waiting, not yet exec'd, until ``start``.

Processes::

    runtime (this process, child subreaper)
      `-- setup child: joins namespaces by path, unshares the user namespace (the runtime writes its id
          maps), unshares the rest, forks the init and exits
            `-- init (pid 1 of a new pid namespace): mounts, pivot_root, credentials; sends "ready";
                blocks reading exec.fifo; execs the user process when ``start`` writes to the fifo

The setup child exists because a new pid namespace applies to children only. Once it exits, the init is
re-parented to the runtime (a subreaper), and when the runtime exits, to whoever started it: the shim.
Any failure before "ready" kills what was started and removes the state directory and the cgroup, so a
failed create leaves nothing behind.
"""

from __future__ import annotations

import os

from ketch.common import fastjson
from ketch.common.errors import InvalidArgument, NotFound, SystemFailure
from ketch.runtime import cgroup_warmup, namespaces, rootfs
from ketch.runtime.channel import Channel
from ketch.runtime.hooks import hook_list, run_hooks
from ketch.runtime.process import (
    close_inherited_fds,
    describe,
    exec_user_process,
    preload,
    prepare_credentials,
    reset_signal_mask,
)
from ketch.runtime.state import ContainerState, now_rfc3339, proc_start_time
from ketch.spec.oci_runtime import validate
from ketch.sys import linux as L

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["create", "load_bundle"]


def load_bundle(bundle: str) -> tuple[str, dict[str, Any], str]:
    """(absolute bundle path, validated config, absolute rootfs path)."""
    bundle = os.path.abspath(bundle)
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise NotFound(f"JSON specification file config.json not found in bundle {bundle}") from None
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror}") from None
    try:
        config = fastjson.loads(raw)
    except ValueError as exc:
        raise InvalidArgument(f"config.json: invalid JSON: {exc}") from None
    validate(config)
    linux = config.get("linux", {})
    if "seccomp" in linux:
        from ketch.runtime import seccomp

        seccomp.validate(linux["seccomp"])
    if not namespaces.wants_new(linux.get("namespaces", []), "mount") and not any(
        ns["type"] == "mount" for ns in linux.get("namespaces", [])
    ):
        raise InvalidArgument("config.json: linux.namespaces: a mount namespace is required")
    root = config["root"]["path"]
    rootfs_path = root if root.startswith("/") else os.path.join(bundle, root)
    if not os.path.isdir(rootfs_path):
        raise InvalidArgument(f"rootfs ({rootfs_path}) does not exist")
    return bundle, config, os.path.realpath(rootfs_path)


# Device rules every container gets after its own (runc's AllowedDevices): mknod of anything (the devices
# that matter are still refused read/write), the default devices, and ptys.
_ALLOWED_DEVICES: tuple[dict[str, Any], ...] = (
    {"allow": True, "type": "c", "major": None, "minor": None, "access": "m"},
    {"allow": True, "type": "b", "major": None, "minor": None, "access": "m"},
    *(
        {"allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"}
        for major, minor in ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2), (136, None))
    ),
)


def cgroup_resources(config: dict[str, Any]) -> dict[str, Any]:
    """linux.resources with the device rules the runtime itself needs appended."""
    linux = config.get("linux", {})
    resources = dict(linux.get("resources", {}))
    rules = list(resources.get("devices", []))
    if rules or linux.get("devices"):
        rules += [dict(rule) for rule in _ALLOWED_DEVICES]
        for dev in linux.get("devices", []):
            if dev["type"] in ("c", "b"):
                rules.append(
                    {
                        "allow": True,
                        "type": dev["type"],
                        "major": dev["major"],
                        "minor": dev["minor"],
                        "access": "rwm",
                    }
                )
        resources["devices"] = rules
    return resources


def _host_root_ids(linux: dict[str, Any]) -> tuple[int, int]:
    """The host uid and gid that the container's root maps to (0, 0 without a new user namespace)."""
    if not namespaces.wants_new(linux.get("namespaces", []), "user"):
        return 0, 0
    ids = []
    for key in ("uidMappings", "gidMappings"):
        host = 0
        for mapping in linux.get(key, []):
            if mapping["containerID"] <= 0 < mapping["containerID"] + mapping["size"]:
                host = mapping["hostID"] - mapping["containerID"]
        ids.append(host)
    return ids[0], ids[1]


class Options:
    """What the CLI passes to :func:`create` beyond the id and bundle."""

    __slots__ = (
        "console_fd",
        "console_socket",
        "no_new_keyring",
        "no_pivot",
        "pid_file",
        "preserve_fds",
        "systemd_cgroup",
    )

    def __init__(
        self,
        *,
        pid_file: str | None = None,
        console_socket: str | None = None,
        console_fd: int = -1,
        no_pivot: bool = False,
        preserve_fds: int = 0,
        no_new_keyring: bool = False,
        systemd_cgroup: bool = False,
    ) -> None:
        self.pid_file = pid_file
        self.console_socket = console_socket
        self.console_fd = console_fd
        self.no_pivot = no_pivot
        self.preserve_fds = preserve_fds
        self.no_new_keyring = no_new_keyring
        self.systemd_cgroup = systemd_cgroup


def create(
    root: str,
    container_id: str,
    bundle: str | tuple[str, dict[str, Any], str],
    opts: Options,
) -> ContainerState:
    """``bundle`` is a directory, or what :func:`load_bundle` returned for it."""
    bundle, config, rootfs_path = load_bundle(bundle) if isinstance(bundle, str) else bundle
    process = config["process"]
    has_console = opts.console_socket is not None or opts.console_fd >= 0
    if process.get("terminal") and not has_console:
        raise InvalidArgument(
            "cannot allocate tty if ketch-runtime will detach without setting console socket"
        )
    if not process.get("terminal") and opts.console_socket is not None:
        raise InvalidArgument("cannot use console socket if ketch-runtime will not detach or allocate tty")
    linux = config.get("linux", {})
    st = ContainerState.reserve(root, container_id)
    setup: _Setup | None = None
    child_pids: list[int] = []
    console_fd = opts.console_fd
    channel: Channel | None = None
    try:
        os.mkfifo(st.fifo, 0o622)
        root_uid, root_gid = _host_root_ids(linux)
        if (root_uid, root_gid) != (0, 0):
            os.chown(st.fifo, root_uid, root_gid)  # the init opens it as the container's root
        st.data = {
            "ociVersion": config["ociVersion"], "id": container_id, "pid": 0, "bundle": bundle,
            "rootfs": rootfs_path, "created": now_rfc3339(), "config": config, "creating": True,
        }  # fmt: skip
        st.save()
        if opts.console_socket is not None:
            from ketch.runtime import terminal

            try:
                console_fd = terminal.connect_console(opts.console_socket)
            except OSError as exc:
                raise InvalidArgument(f"console socket {opts.console_socket}: {exc.strerror}") from None
        L.prctl(L.PR_SET_CHILD_SUBREAPER, 1)
        channel = Channel()
        compiled = preload(process, linux, config, seccomp_cache=os.path.join(st.root, ".seccomp"))
        setup = _Setup(st, config, rootfs_path, channel, console_fd, opts, compiled)
        if setup.direct():
            pid = setup.fork_init_directly()
        else:
            pid = os.fork()
            if pid == 0:
                setup.run_child()  # never returns
        child_pids.append(pid)
        channel.close_child_ends()
        init_pid = setup.drive_parent(pid, child_pids, direct=setup.direct())
        del st.data["creating"]
        st.save()
        if opts.pid_file:
            from ketch.common.atomic import atomic_write

            atomic_write(os.path.abspath(opts.pid_file), str(init_pid).encode(), durable=False)
        return st
    except BaseException:
        for pid in child_pids:
            try:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        try:
            if st.cgroup is not None:
                st.cgroup.destroy()
        finally:
            st.remove()
        raise
    finally:
        if channel is not None:
            channel.close()
        if console_fd >= 0 and console_fd != opts.console_fd:
            os.close(console_fd)


class _Setup:
    """The three sides of create: the runtime's (``drive_parent``), the setup child's and the init's."""

    def __init__(
        self,
        st: ContainerState,
        config: dict[str, Any],
        rootfs_path: str,
        channel: Channel,
        console_fd: int,
        opts: Options,
        compiled: tuple[bytes, int] | None,
    ) -> None:
        self.compiled = compiled
        self.st = st
        self.config = config
        self.rootfs = rootfs_path
        self.channel = channel
        self.console_fd = console_fd
        self.opts = opts
        self.linux: dict[str, Any] = config.get("linux", {})
        self.ns: list[dict[str, Any]] = self.linux.get("namespaces", [])

    # -- runtime side -------------------------------------------------------------------------------
    def drive_parent(self, setup_pid: int, child_pids: list[int], *, direct: bool) -> int:
        """Serve the setup child's and the init's requests until the init is ready; return its pid.
        With ``direct``, ``setup_pid`` is already the init (see :meth:`fork_init_directly`)."""
        channel = self.channel
        init_pid = 0
        if direct:
            init_pid = setup_pid
            self._init_started(init_pid, None, child_pids)
        while True:
            message = channel.recv()
            kind = message["type"]
            if kind == "userns":
                namespaces.write_id_maps(setup_pid, self.linux)
                channel.send("mapped")
            elif kind == "init":
                init_pid = int(message["pid"])
                child_pids.insert(0, init_pid)
                self._init_started(init_pid, setup_pid, child_pids)
            elif kind == "hooks":
                state = self.st.oci_state("creating")
                run_hooks("prestart", hook_list(self.config, "prestart"), state)
                run_hooks("createRuntime", hook_list(self.config, "createRuntime"), state)
                manager = self.st.cgroup
                channel.send("hooks-done", cgroup_paths=manager.paths(), cgroup_path=manager.path)
            elif kind == "ready":
                return init_pid
            elif kind == "error":
                raise SystemFailure(f"unable to start container process: {message['message']}")
            else:
                raise SystemFailure(
                    "unable to start container process: container init exited before it was ready"
                )

    def _init_started(self, init_pid: int, setup_pid: int | None, child_pids: list[int]) -> None:
        self.channel.send("proceed", pid=init_pid)
        # The cgroup is made, limited and joined while the init builds its mounts (moving a task between
        # v1 cgroups may also wait for an RCU grace period: see cgroup_warmup.py). The init waits for
        # "hooks-done" before anything that needs the cgroup: its cgroup namespace, cgroup mounts, and of
        # course the user process; it learns the cgroup's paths with "hooks-done".
        from ketch.runtime import cgroups

        st = self.st
        manager = cgroups.open_manager(self.linux.get("cgroupsPath"), st.id, systemd=self.opts.systemd_cgroup)
        st.cgroup = manager
        manager.create()
        manager.set(cgroup_resources(self.config))
        manager.apply(init_pid)
        cgroup_warmup.done()
        st.data["cgroup_path"] = manager.path
        st.data["cgroup_paths"] = manager.paths()
        if setup_pid is not None:
            os.waitpid(setup_pid, 0)
            child_pids.remove(setup_pid)
        info = proc_start_time(init_pid)
        self.st.data["pid"] = init_pid
        self.st.data["pid_start"] = info[0] if info else 0
        self.st.save()

    # -- the init forked by the runtime itself --------------------------------------------------------
    def direct(self) -> bool:
        """Without a user or time namespace, no setup child is needed: the runtime enters the new (or
        joined) pid namespace just for the fork of the init, which then enters the other namespaces
        itself. One process and one round trip fewer than :meth:`run_child`."""
        return not any(ns["type"] in ("user", "time") for ns in self.ns)

    def fork_init_directly(self) -> int:
        own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        try:
            pid_ns = next((ns for ns in self.ns if ns["type"] == "pid"), None)
            if pid_ns is not None and "path" in pid_ns:
                namespaces.join({"pid": pid_ns["path"]})
            elif pid_ns is not None:
                L.unshare(L.CLONE_NEWPID)  # for children only: this process stays where it is
            pid = os.fork()
            if pid == 0:
                self._run_direct_init()  # never returns
            return pid
        finally:
            # Back to our own pid namespace for later children (hooks run in the runtime's namespaces).
            L.setns(own, L.CLONE_NEWPID)
            os.close(own)

    def _run_direct_init(self) -> None:
        try:
            self.channel.become_child()
            reset_signal_mask()
            namespaces.join(
                {ns["type"]: ns["path"] for ns in self.ns if "path" in ns and ns["type"] != "pid"}
            )
            self._unshare_rest(L.CLONE_NEWPID)
        except BaseException as exc:
            self.channel.send("error", message=describe(exc))
            os._exit(1)
        self.run_init()

    def _unshare_rest(self, exclude: int) -> None:
        # The cgroup namespace is unshared by the init, once the runtime has moved it into its cgroup.
        L.unshare(namespaces.new_flags(self.ns) & ~(L.CLONE_NEWCGROUP | exclude))
        if not self.opts.no_new_keyring:
            try:
                L.join_session_keyring(f"_ses.{self.st.id}")
            except OSError:
                pass  # keyrings may be unavailable (or disallowed by seccomp); runc ignores that too

    # -- setup child --------------------------------------------------------------------------------
    def run_child(self) -> None:
        code = 1
        try:
            self.channel.become_child()
            reset_signal_mask()
            joins = {ns["type"]: ns["path"] for ns in self.ns if "path" in ns}
            namespaces.join(joins)
            if namespaces.wants_new(self.ns, "user"):
                L.unshare(L.CLONE_NEWUSER)
                self.channel.send("userns")
                self.channel.expect("mapped")
                os.setresgid(0, 0, 0)
                os.setresuid(0, 0, 0)
            self._unshare_rest(0)
            pid = os.fork()
            if pid == 0:
                self.run_init()  # never returns
            self.channel.send("init", pid=pid)
            code = 0
        except BaseException as exc:
            self.channel.send("error", message=describe(exc))
        finally:
            os._exit(code)

    # -- container init -----------------------------------------------------------------------------
    def run_init(self) -> None:
        channel = self.channel
        config = self.config
        process = config["process"]
        ready = False
        try:
            self.st.data["pid"] = channel.expect("proceed")["pid"]  # as the host sees it, for hooks
            os.setsid()
            if config.get("hostname"):
                L.sethostname(config["hostname"])
            if config.get("domainname"):
                L.setdomainname(config["domainname"])
            os.chdir(self.st.data["bundle"])
            fifo = os.open(self.st.fifo, os.O_RDWR | os.O_CLOEXEC)  # O_RDWR: opening never blocks
            close_inherited_fds(3 + self.opts.preserve_fds, keep={fifo, self.console_fd, *channel.fds()})
            in_userns = namespaces.wants_new(self.ns, "user") or "user" in {
                ns["type"] for ns in self.ns if "path" in ns
            }
            if namespaces.wants_new(self.ns, "network"):
                namespaces.loopback_up()
            rest = rootfs.prepare(config, self.rootfs, in_userns=in_userns)
            channel.send("hooks")
            cgroup = channel.expect("hooks-done")
            new_cgroupns = namespaces.wants_new(self.ns, "cgroup")
            if new_cgroupns:
                L.unshare(L.CLONE_NEWCGROUP)
            rootfs.mount_rest(
                config,
                self.rootfs,
                rest,
                in_userns=in_userns,
                cgroup_paths=cgroup["cgroup_paths"],
                cgroup_path=cgroup["cgroup_path"],
                new_cgroupns=new_cgroupns,
            )
            run_hooks("createContainer", hook_list(config, "createContainer"), self.st.oci_state("creating"))
            rootfs.pivot(self.rootfs, no_pivot=self.opts.no_pivot)
            rootfs.finalize(config, in_userns=in_userns)
            if process.get("terminal"):
                from ketch.runtime import terminal

                master, slave = terminal.open_container_pty(process.get("consoleSize"))
                terminal.send_fd(self.console_fd, master, "/dev/ptmx")
                os.close(master)
                os.close(self.console_fd)
                terminal.make_controlling(slave)
            elif self.console_fd >= 0:
                os.close(self.console_fd)
            exe, env = prepare_credentials(process, self.compiled)
            channel.send("ready")
            ready = True
            channel.close()
            os.read(fifo, 1)  # blocks until `start`
            os.close(fifo)
            exec_user_process(process, self.compiled, exe, env, self.st)
        except BaseException as exc:
            if not ready:
                channel.send("error", message=describe(exc))
            else:
                os.write(2, f"ketch-runtime: {describe(exc)}\n".encode())
        os._exit(1)
