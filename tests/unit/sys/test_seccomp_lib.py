"""The libseccomp binding against the real library: build filters and read their BPF, never load them."""

from __future__ import annotations

import errno
import struct
from pathlib import Path

import pytest
from tests.fakes.seccomp_fake import run_bpf

from ketch.common.errors import InvalidArgument, SystemFailure, Unsupported
from ketch.sys import seccomp as sc

X86_64 = sc.ARCH_X86_64


@pytest.fixture(autouse=True)
def need_libseccomp() -> None:
    try:
        sc.version()
    except Unsupported as exc:
        pytest.skip(str(exc))


def test_version_and_api_level() -> None:
    major, minor, _micro = sc.version()
    assert (major, minor) >= (2, 5)
    assert sc.api_level() >= 1


def test_architecture_names() -> None:
    assert sc.arch_resolve("x86_64") == X86_64
    assert sc.arch_resolve("x86") == sc.ARCH_X86
    assert sc.arch_resolve("x32") == sc.ARCH_X32
    assert sc.arch_resolve("s390x") == sc.ARCH_S390X
    assert sc.arch_resolve("z80") is None
    assert sc.arch_native() in {
        sc.arch_resolve(n) for n in ("x86_64", "aarch64", "ppc64le", "s390x", "riscv64")
    }


def test_syscall_names_per_architecture() -> None:
    assert sc.syscall_resolve("mkdir", X86_64) == 83
    assert sc.syscall_resolve("mkdir", sc.ARCH_X86) == 39
    assert sc.syscall_resolve("mkdir", sc.ARCH_X32) == 83 | 0x40000000
    assert sc.syscall_resolve("no_such_syscall") is None
    assert sc.syscall_resolve("getpid") == sc.syscall_resolve("getpid", sc.arch_native())
    # syscalls an architecture lacks resolve to libseccomp's negative pseudo numbers, not to "unknown"
    socketcall = sc.syscall_resolve("socketcall", X86_64)
    assert socketcall is not None and socketcall < 0


def native(name: str) -> int:
    """Rules take native syscall numbers (libseccomp carries them over to the other architectures)."""
    nr = sc.syscall_resolve(name)
    assert nr is not None
    return nr


def _sample_filter() -> sc.SeccompFilter:
    """The BPF is checked for x86_64, whatever the host: 39 getpid, 62 kill, 83 mkdir there."""
    filt = sc.SeccompFilter(sc.act_errno(errno.EPERM))
    filt.add_arch(X86_64)
    filt.add_arch(sc.ARCH_NATIVE)  # already present: not an error
    filt.set_attr(sc.ATTR_CTL_NNP, 0)
    filt.add_rule(sc.ACT_ALLOW, native("getpid"))
    filt.add_rule(sc.act_errno(errno.ENOSYS), native("mkdirat"), [(2, sc.CMP_MASKED_EQ, 0o777, 0o700)])
    filt.add_rule(sc.ACT_KILL_PROCESS, native("kill"), [(0, sc.CMP_EQ, 1, 0), (1, sc.CMP_GT, 9, 0)])
    return filt


def test_exported_bpf_does_what_the_rules_say() -> None:
    with _sample_filter() as filt:
        program = filt.export_bpf()
        assert filt.get_attr(sc.ATTR_CTL_NNP) == 0
    assert len(program) % 8 == 0 and len(program) > 8
    assert run_bpf(program, 39, X86_64) == sc.ACT_ALLOW
    assert run_bpf(program, 258, X86_64, [0, 0, 0o40700]) == sc.act_errno(errno.ENOSYS)  # mkdirat
    assert run_bpf(program, 258, X86_64, [0, 0, 0o755]) == sc.act_errno(errno.EPERM)
    assert run_bpf(program, 83, X86_64, [0, 0o700]) == sc.act_errno(errno.EPERM)  # mkdir: no rule
    assert run_bpf(program, 62, X86_64, [1, 10]) == sc.ACT_KILL_PROCESS
    assert run_bpf(program, 62, X86_64, [1, 9]) == sc.act_errno(errno.EPERM)
    assert run_bpf(program, 62, X86_64, [2, 10]) == sc.act_errno(errno.EPERM)
    assert run_bpf(program, 39, sc.ARCH_S390X) == sc.ACT_KILL  # foreign architecture


def test_export_to_a_descriptor(tmp_path: Path) -> None:
    with _sample_filter() as filt, open(tmp_path / "bpf", "wb") as out:
        filt.export_bpf_to(out.fileno())
        expected = filt.export_bpf()
    data = (tmp_path / "bpf").read_bytes()
    assert data == expected
    # the first instruction loads seccomp_data.arch
    assert struct.unpack_from("=HBBI", data) == (0x20, 0, 0, 4)


def test_large_filters_export_whole() -> None:
    # more than a pipe buffer (64 KiB) of instructions
    with sc.SeccompFilter(sc.ACT_ALLOW) as filt:
        for value in range(9000):
            filt.add_rule(sc.act_errno(1), native("ioctl"), [(1, sc.CMP_EQ, value, 0)])
        program = filt.export_bpf()
    assert len(program) > 65536
    ioctl = native("ioctl")
    assert run_bpf(program, ioctl, sc.arch_native(), [0, 8999]) == sc.act_errno(1)
    assert run_bpf(program, ioctl, sc.arch_native(), [0, 9000]) == sc.ACT_ALLOW


def test_two_checks_on_one_argument_is_invalid() -> None:
    with (
        sc.SeccompFilter(sc.ACT_ALLOW) as filt,
        pytest.raises(InvalidArgument, match=r"syscall \d+.*Invalid"),
    ):
        filt.add_rule(sc.act_errno(1), native("mkdir"), [(1, sc.CMP_EQ, 1, 0), (1, sc.CMP_EQ, 2, 0)])


def test_rule_with_the_default_action_is_refused() -> None:
    with sc.SeccompFilter(sc.ACT_ALLOW) as filt, pytest.raises(SystemFailure) as info:
        filt.add_rule(sc.ACT_ALLOW, native("mkdir"))
    assert info.value.errno == errno.EACCES


def test_bad_attribute_and_architecture() -> None:
    with sc.SeccompFilter(sc.ACT_ALLOW) as filt:
        with pytest.raises(InvalidArgument, match="attribute 99"):
            filt.set_attr(99, 1)
        with pytest.raises(InvalidArgument, match="architecture 0x1234"):
            filt.add_arch(0x1234)


def test_invalid_default_action() -> None:
    with pytest.raises(InvalidArgument, match="default action 0x12345678"):
        sc.SeccompFilter(0x12345678)


def test_released_filter_cannot_be_used() -> None:
    filt = sc.SeccompFilter(sc.ACT_ALLOW)
    filt.release()
    filt.release()  # twice is fine
    with pytest.raises(ValueError, match="released"):
        filt.add_rule(sc.act_errno(1), 83)


def test_load_program_refuses_what_is_not_bpf() -> None:
    # checked before the kernel is asked, so nothing is loaded into the test process
    with pytest.raises(InvalidArgument, match="13 bytes"):
        sc.load_program(b"x" * 13, 0)
    with pytest.raises(InvalidArgument, match="0 bytes"):
        sc.load_program(b"", 0)


def test_missing_library_is_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sc, "_lib", None)
    monkeypatch.setattr(sc, "LIBRARY", "libseccomp-missing.so.0")
    with pytest.raises(Unsupported, match=r"libseccomp-missing\.so\.0.*install libseccomp"):
        sc.SeccompFilter(sc.ACT_ALLOW)


def test_backend_object_matches_the_functions() -> None:
    backend = sc.LibSeccomp()
    assert backend.arch_native() == sc.arch_native()
    assert backend.arch_resolve("x86") == sc.ARCH_X86
    assert backend.syscall_resolve("mkdir", X86_64) == 83
    filt = backend.new_filter(sc.ACT_ALLOW)
    try:
        assert isinstance(filt, sc.SeccompFilter)
    finally:
        filt.release()
