"""Docker's default seccomp profile, as data: what moby's profiles/seccomp/default.json allows (Docker 25 and
later: io_uring refused, the futex2 calls, cachestat and fchmodat2 allowed), written as tables grouped by
the condition that unlocks each syscall.

:func:`docker_profile` assembles the tables into a profile in Docker's own format (``archMap``,
``includes`` / ``excludes``); ``ketch.spec.seccomp_profile`` turns that into a container's ``linux.seccomp``
exactly as it turns a user's ``--security-opt seccomp=file.json``. Anything not allowed here gets
``defaultErrnoRet`` (EPERM); syscalls newer than every syscall named here get ENOSYS from the runtime,
so libcs fall back as they would on an older kernel.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "ALWAYS", "BY_ARCH", "BY_CAPABILITY", "ENOSYS", "EPERM", "NAMESPACE_FLAGS", "PTRACE_SINCE_4_8", "docker_profile",
]  # fmt: skip

EPERM = 1
ENOSYS = 38

# Allowed for every container, whatever its capabilities (one syscall per word, sorted).
_ALWAYS = """
    _llseek _newselect accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown
    chown32 clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
    clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2 dup3
    epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old
    eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate
    fanotify_mark fchdir fchmod fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr
    flistxattr flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate
    ftruncate64 futex futex_requeue futex_time64 futex_wait futex_waitv futex_wake futimesat get_robust_list
    get_thread_area getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32
    getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom
    getresgid getresgid32 getresuid getresuid32 getrlimit getrusage getsid getsockname getsockopt gettid
    gettimeofday getuid getuid32 getxattr inotify_add_watch inotify_init inotify_init1 inotify_rm_watch
    io_cancel io_destroy io_getevents io_pgetevents io_pgetevents_time64 io_setup io_submit ioctl ioprio_get
    ioprio_set ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32
    lgetxattr link linkat listen listxattr llistxattr lremovexattr lseek lsetxattr lstat lstat64 madvise
    map_shadow_stack membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2
    mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64
    mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock munlockall
    munmap name_to_handle_at nanosleep newfstatat open openat openat2 pause pidfd_open pidfd_send_signal pipe
    pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64
    process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink readlinkat
    readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr rename renameat
    renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo
    rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_get_priority_max
    sched_get_priority_min sched_getaffinity sched_getattr sched_getparam sched_getscheduler
    sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
    sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop semtimedop_time64 send
    sendfile sendfile64 sendmmsg sendmsg sendto set_robust_list set_thread_area set_tid_address setfsgid
    setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority
    setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit setsid
    setsockopt setuid setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4
    sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat
    sync sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete timer_getoverrun
    timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create timerfd_gettime
    timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname
    unlink unlinkat utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
"""
ALWAYS: tuple[str, ...] = tuple(_ALWAYS.split())

# Capability -> syscalls allowed when the container holds it (in its bounding set).
BY_CAPABILITY: tuple[tuple[str, str], ...] = (
    ("CAP_DAC_READ_SEARCH", "open_by_handle_at"),
    ("CAP_SYS_ADMIN", "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount "
                      "mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname "
                      "sethostname setns syslog umount umount2 unshare"),
    ("CAP_SYS_BOOT", "reboot"),
    ("CAP_SYS_CHROOT", "chroot"),
    ("CAP_SYS_MODULE", "delete_module init_module finit_module"),
    ("CAP_SYS_PACCT", "acct"),
    ("CAP_SYS_PTRACE", "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace"),
    ("CAP_SYS_RAWIO", "iopl ioperm"),
    ("CAP_SYS_TIME", "settimeofday stime clock_settime clock_settime64"),
    ("CAP_SYS_TTY_CONFIG", "vhangup"),
    ("CAP_SYS_NICE", "get_mempolicy mbind set_mempolicy set_mempolicy_home_node"),
    ("CAP_SYSLOG", "syslog"),
    ("CAP_BPF", "bpf"),
    ("CAP_PERFMON", "perf_event_open"),
)  # fmt: skip

# Architecture-specific calls, by the Go architecture names Docker's ``arches`` filters use.
BY_ARCH: tuple[tuple[tuple[str, ...], str], ...] = (
    (("ppc64le",), "sync_file_range2 swapcontext"),
    (("arm", "arm64"), "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls"),
    (("amd64", "x32"), "arch_prctl"),
    (("amd64", "x32", "x86"), "modify_ldt"),
    (("s390", "s390x"), "s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr"),
    (("riscv64",), "riscv_flush_icache"),
)

# Since Linux 4.8 seccomp runs after ptrace, so a tracer can no longer step around the filter: harmless.
PTRACE_SINCE_4_8 = "process_vm_readv process_vm_writev ptrace"

# clone() flags that create namespaces (linux/sched.h): refused without CAP_SYS_ADMIN.
_CLONE_NEWNS, _CLONE_NEWCGROUP, _CLONE_NEWUTS = 0x00020000, 0x02000000, 0x04000000
_CLONE_NEWIPC, _CLONE_NEWUSER, _CLONE_NEWPID, _CLONE_NEWNET = 0x08000000, 0x10000000, 0x20000000, 0x40000000
NAMESPACE_FLAGS = (
    _CLONE_NEWNS
    | _CLONE_NEWCGROUP
    | _CLONE_NEWUTS
    | _CLONE_NEWIPC
    | _CLONE_NEWUSER
    | _CLONE_NEWPID
    | _CLONE_NEWNET
)

# personality(2) values a container may set: PER_LINUX, PER_LINUX32, UNAME26, PER_LINUX32|UNAME26, and
# 0xffffffff, which only queries the current persona.
_PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
_AF_VSOCK = 40  # host <-> VM sockets: a container must not reach the hypervisor

# OCI architecture -> the compatible architectures a filter for it also covers.
_ARCH_MAP: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("SCMP_ARCH_X86_64", ("SCMP_ARCH_X86", "SCMP_ARCH_X32")),
    ("SCMP_ARCH_AARCH64", ("SCMP_ARCH_ARM",)),
    ("SCMP_ARCH_MIPS64", ("SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32")),
    ("SCMP_ARCH_MIPS64N32", ("SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64")),
    ("SCMP_ARCH_MIPSEL64", ("SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32")),
    ("SCMP_ARCH_MIPSEL64N32", ("SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64")),
    ("SCMP_ARCH_S390X", ("SCMP_ARCH_S390",)),
    ("SCMP_ARCH_RISCV64", ()),
)

_ALLOW = "SCMP_ACT_ALLOW"


def _allow(names: str | tuple[str, ...], **extra: Any) -> dict[str, Any]:
    return {"names": list(names.split() if isinstance(names, str) else names), "action": _ALLOW, **extra}


def _arg(index: int, value: int, op: str) -> dict[str, Any]:
    return {"index": index, "value": value, "op": op}


def docker_profile() -> dict[str, Any]:
    """The default profile in Docker's file format (a new object on every call; callers may change it)."""
    no_admin = {"caps": ["CAP_SYS_ADMIN"]}
    s390 = ["s390", "s390x"]
    syscalls: list[dict[str, Any]] = [
        _allow(ALWAYS),
        _allow(PTRACE_SINCE_4_8, includes={"minKernel": "4.8"}),
        _allow("socket", args=[_arg(0, _AF_VSOCK, "SCMP_CMP_NE")]),
        *(_allow("personality", args=[_arg(0, value, "SCMP_CMP_EQ")]) for value in _PERSONALITIES),
        *(_allow(names, includes={"arches": list(arches)}) for arches, names in BY_ARCH),
        *(_allow(names, includes={"caps": [cap]}) for cap, names in BY_CAPABILITY),
        # without CAP_SYS_ADMIN: clone only when it creates no namespace (flags are arg 1 on s390) ...
        _allow("clone", args=[_arg(0, NAMESPACE_FLAGS, "SCMP_CMP_MASKED_EQ")],
               excludes={**no_admin, "arches": s390}),
        _allow("clone", args=[_arg(1, NAMESPACE_FLAGS, "SCMP_CMP_MASKED_EQ")],
               includes={"arches": s390}, excludes=no_admin),
        # ... and clone3, whose flags sit in memory seccomp cannot read, says ENOSYS so libcs use clone
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS, "excludes": no_admin},
    ]  # fmt: skip
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "archMap": [{"architecture": arch, "subArchitectures": list(subs)} for arch, subs in _ARCH_MAP],
        "syscalls": syscalls,
    }
