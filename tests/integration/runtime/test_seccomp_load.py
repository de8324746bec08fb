"""Seccomp filters loaded for real, each into a forked child that reports what its syscalls did."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ketch.common.errors import SystemFailure
from ketch.runtime import seccomp
from ketch.sys import seccomp as sc

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="loads seccomp filters as root (CAP_SYS_ADMIN)"),
]

_PR_SET_NO_NEW_PRIVS = 38


def _errno_of(fn: Callable[[], object]) -> int:
    """0 when the call works, else its errno (the child reports numbers, not exceptions)."""
    try:
        fn()
    except OSError as exc:
        return exc.errno or -1
    return 0


def in_child(
    profile: dict[str, Any], probe: Callable[[], dict[str, Any]], before: Callable[[], None] = lambda: None
) -> tuple[dict[str, Any] | None, int]:
    """Fork, load `profile` in the child, run `probe` there; returns (what it reported, wait status)."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        status = 0
        try:
            os.close(rfd)
            before()
            seccomp.load(profile)
            report: dict[str, Any] = {"ok": probe()}
        except BaseException as exc:
            report = {"error": f"{type(exc).__name__}: {exc}", "errno": getattr(exc, "errno", None)}
            status = 1
        try:
            os.write(wfd, json.dumps(report).encode())  # json was imported before the filter went in
        finally:
            os._exit(status)
    os.close(wfd)
    chunks = []
    while chunk := os.read(rfd, 65536):
        chunks.append(chunk)
    os.close(rfd)
    _, wait_status = os.waitpid(pid, 0)
    return (json.loads(b"".join(chunks)) if chunks else None), wait_status


def _native_oci_arch() -> str:
    native = sc.arch_native()
    for oci, name in seccomp.ARCHITECTURES.items():
        if sc.arch_resolve(name) == native:
            return oci
    pytest.skip("no OCI name for this host's architecture")


def _mode_rule(name: str, index: int, **extra: Any) -> dict[str, Any]:
    """ERRNO 38 for `name` when the mode argument's permission bits are exactly 0700."""
    return {
        "names": [name],
        "action": "SCMP_ACT_ERRNO",
        "errnoRet": errno.ENOSYS,
        "args": [{"index": index, "value": 0o777, "valueTwo": 0o700, "op": "SCMP_CMP_MASKED_EQ"}],
        **extra,
    }


def _needed_below(limit: str) -> list[str]:
    """What a child needs once its filter is in (reporting, memory, exiting), among syscalls numbered
    below `limit`, so that `limit` is "newer than the profile" and gets ENOSYS from the stub."""
    top = sc.syscall_resolve(limit)
    assert top is not None
    needed = [
        "read", "write", "close", "exit", "exit_group", "brk", "mmap", "munmap", "mremap", "madvise",
        "rt_sigprocmask", "rt_sigaction", "rt_sigreturn", "sigaltstack", "futex", "getpid", "gettid",
        "fstat", "newfstatat", "lseek", "getrandom",
    ]  # fmt: skip
    allowed = [n for n in needed if (nr := sc.syscall_resolve(n)) is not None and 0 <= nr < top]
    assert {"write", "exit_group"} <= set(allowed)
    return allowed


def test_errno_for_mkdir_only_when_its_mode_matches(tmp_path: Path) -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [_mode_rule("mkdir", 1), _mode_rule("mkdirat", 2)],
    }
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)

    def probe() -> dict[str, Any]:
        with open("/proc/self/status") as f:
            status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        return {
            "mkdir_0700": _errno_of(lambda: os.mkdir(tmp_path / "a", 0o700)),
            "mkdirat_0700": _errno_of(lambda: os.mkdir("b", 0o700, dir_fd=dir_fd)),
            "mkdir_0755": _errno_of(lambda: os.mkdir(tmp_path / "c", 0o755)),
            "mkdirat_0750": _errno_of(lambda: os.mkdir("d", 0o750, dir_fd=dir_fd)),
            "getpid": os.getpid() > 0,
            "seccomp": status.get("Seccomp"),
        }

    try:
        report, wait_status = in_child(profile, probe)
    finally:
        os.close(dir_fd)
    assert report == {
        "ok": {
            "mkdir_0700": errno.ENOSYS,
            "mkdirat_0700": errno.ENOSYS,
            "mkdir_0755": 0,
            "mkdirat_0750": 0,
            "getpid": True,
            "seccomp": "2",  # SECCOMP_MODE_FILTER
        }
    }
    assert os.waitstatus_to_exitcode(wait_status) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "d"]


def test_two_checks_of_one_argument_match_either(tmp_path: Path) -> None:
    # runc's rule: comparisons sharing an argument become separate rules, so either one matching is enough
    checks = [{"index": 2, "value": mode, "op": "SCMP_CMP_EQ"} for mode in (0o711, 0o722)]
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EROFS, "args": checks}
        ],
    }
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)

    def probe() -> dict[str, Any]:
        return {
            oct(m): _errno_of(lambda m=m: os.mkdir(oct(m), m, dir_fd=dir_fd)) for m in (0o711, 0o722, 0o733)
        }

    try:
        report, _ = in_child(profile, probe)
    finally:
        os.close(dir_fd)
    assert report == {"ok": {"0o711": errno.EROFS, "0o722": errno.EROFS, "0o733": 0}}


@pytest.mark.parametrize(
    "flags",
    [None, [], ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]],
    ids=["default-flags", "no-flags-prctl", "all-flags"],
)
def test_errno_by_default_with_an_allow_list(tmp_path: Path, flags: list[str] | None) -> None:
    allowed = _needed_below("memfd_create")
    profile: dict[str, Any] = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.EACCES,
        "architectures": [_native_oci_arch()],
        "syscalls": [{"names": allowed, "action": "SCMP_ACT_ALLOW"}],
    }
    if flags is not None:
        profile["flags"] = flags

    def probe() -> dict[str, Any]:
        return {
            "mkdir": _errno_of(lambda: os.mkdir(tmp_path / "x")),
            "memfd_create": _errno_of(lambda: os.close(os.memfd_create("probe"))),
            "getpid": os.getpid() > 0,
        }

    report, wait_status = in_child(profile, probe)
    assert report == {"ok": {"mkdir": errno.EACCES, "memfd_create": errno.ENOSYS, "getpid": True}}
    assert os.waitstatus_to_exitcode(wait_status) == 0
    assert not (tmp_path / "x").exists()


def test_kill_process_action_kills_with_sigsys() -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}],
    }
    report, wait_status = in_child(profile, lambda: {"ppid": os.getppid()})
    assert report is None
    assert os.WIFSIGNALED(wait_status) and os.WTERMSIG(wait_status) == signal.SIGSYS


def _drop_root(no_new_privs: bool) -> Callable[[], None]:
    def before() -> None:
        if no_new_privs:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)  # and with it CAP_SYS_ADMIN

    return before


@pytest.mark.parametrize("stub", [False, True], ids=["seccomp_load", "ketch-loads-patched-bpf"])
def test_without_cap_sys_admin_no_new_privs_is_needed(stub: bool) -> None:
    profile: dict[str, Any] = {
        "defaultAction": "SCMP_ACT_ERRNO" if stub else "SCMP_ACT_ALLOW",
        "architectures": [_native_oci_arch()],
        "syscalls": [
            {"names": _needed_below("memfd_create"), "action": "SCMP_ACT_ALLOW"},
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV},
        ],
    }

    def probe() -> dict[str, Any]:
        return {"mkdir": _errno_of(lambda: os.mkdir("/nonexistent-dir/x"))}

    refused, _ = in_child(profile, probe, before=_drop_root(no_new_privs=False))
    assert refused is not None and refused["error"].startswith(f"{SystemFailure.__name__}: seccomp: loading")
    assert refused["errno"] == errno.EACCES
    loaded, _ = in_child(profile, probe, before=_drop_root(no_new_privs=True))
    assert loaded == {"ok": {"mkdir": errno.EXDEV}}
