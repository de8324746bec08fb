"""linux.seccomp -> libseccomp calls, checked through a recording backend (and libseccomp's own BPF)."""

from __future__ import annotations

from typing import Any

import pytest
from tests.fakes.seccomp_fake import ARCH_AARCH64, SYSCALLS, FakeBackend, FakeFilter, run_bpf

from ketch.common.errors import InvalidArgument, SystemFailure, Unsupported
from ketch.runtime import seccomp
from ketch.sys import seccomp as sc

X86_64, X86, X32 = sc.ARCH_X86_64, sc.ARCH_X86, sc.ARCH_X32
ALLOW, LOG, KILL, KILL_PROCESS, TRAP = sc.ACT_ALLOW, sc.ACT_LOG, sc.ACT_KILL, sc.ACT_KILL_PROCESS, sc.ACT_TRAP
SSB, NNP, RAWRC, OPT = sc.ATTR_CTL_SSB, sc.ATTR_CTL_NNP, sc.ATTR_API_SYSRAWRC, sc.ATTR_CTL_OPTIMIZE
ENOSYS_RET = sc.act_errno(38)
NR = SYSCALLS[X86_64]


def errno(n: int) -> int:
    return sc.act_errno(n)


def attrs(*extra: tuple[int, int], ssb: bool = True) -> list[tuple[Any, ...]]:
    """The attribute calls every filter gets: flags, raw return codes, no_new_privs cleared."""
    out: list[tuple[Any, ...]] = [("attr", SSB, 1)] if ssb else []
    out += [("attr", a, v) for a, v in extra]
    return [*out, ("attr", RAWRC, 1), ("attr", NNP, 0)]


def run(profile: dict[str, Any], **backend_args: Any) -> list[tuple[Any, ...]]:
    backend = FakeBackend(**backend_args)
    seccomp.install(profile, backend)
    return backend.calls


def call(names: list[str], action: str, **extra: Any) -> dict[str, Any]:
    return {"names": names, "action": action, **extra}


_GETRANDOM = [call(["getrandom"], "SCMP_ACT_KILL_PROCESS")]  # a syscall numbered above 0
_X86_64_ONLY = ["SCMP_ARCH_X86_64"]


# --- translation table -----------------------------------------------------------------------------------

TABLE: list[tuple[str, dict[str, Any], list[tuple[Any, ...]]]] = [
    (
        "allow by default, one errno rule, unknown syscall skipped",
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [call(["mkdir", "no_such_syscall"], "SCMP_ACT_ERRNO", errnoRet=38)],
        },
        [("init", ALLOW), *attrs(), ("rule", errno(38), NR["mkdir"], ()), ("load",), ("release",)],
    ),
    (
        "errno without errnoRet is EPERM; each action maps to libseccomp's value",
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                call(["read"], "SCMP_ACT_ERRNO"),
                call(["write"], "SCMP_ACT_KILL"),
                call(["close"], "SCMP_ACT_KILL_PROCESS"),
                call(["getpid"], "SCMP_ACT_KILL_THREAD"),
                call(["kill"], "SCMP_ACT_TRAP"),
                call(["mkdir"], "SCMP_ACT_TRACE"),
                call(["mkdirat"], "SCMP_ACT_TRACE", errnoRet=7),
                call(["getrandom"], "SCMP_ACT_LOG"),
            ],
        },
        [
            ("init", ALLOW),
            *attrs(),
            ("rule", errno(1), NR["read"], ()),
            ("rule", KILL, NR["write"], ()),
            ("rule", KILL_PROCESS, NR["close"], ()),
            ("rule", sc.ACT_KILL_THREAD, NR["getpid"], ()),
            ("rule", TRAP, NR["kill"], ()),
            ("rule", sc.act_trace(1), NR["mkdir"], ()),
            ("rule", sc.act_trace(7), NR["mkdirat"], ()),
            ("rule", LOG, NR["getrandom"], ()),
            ("load",),
            ("release",),
        ],
    ),
    (
        "rules with the default action are skipped (errno compared with its value, KILL is KILL_THREAD)",
        {
            "defaultAction": "SCMP_ACT_KILL",
            "architectures": [],
            "syscalls": [
                call(["read"], "SCMP_ACT_KILL_THREAD"),
                call(["write"], "SCMP_ACT_KILL"),
                call(["getpid"], "SCMP_ACT_ALLOW"),
            ],
        },
        [("init", KILL), *attrs(), ("rule", ALLOW, NR["getpid"], ()), ("load",), ("release",)],
    ),
    (
        "comparisons on different arguments form one rule; masked equality keeps both values",
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                call(
                    ["mkdirat"],
                    "SCMP_ACT_ERRNO",
                    errnoRet=13,
                    args=[
                        {"index": 0, "value": 5, "op": "SCMP_CMP_NE"},
                        {"index": 2, "value": 0o777, "valueTwo": 0o700, "op": "SCMP_CMP_MASKED_EQ"},
                    ],
                )
            ],
        },
        [
            ("init", ALLOW),
            *attrs(),
            ("rule", errno(13), NR["mkdirat"], ((0, sc.CMP_NE, 5, 0), (2, sc.CMP_MASKED_EQ, 0o777, 0o700))),
            ("load",),
            ("release",),
        ],
    ),
    (
        "two comparisons on one argument become one rule each, for every name",
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                call(
                    ["read", "write"],
                    "SCMP_ACT_ERRNO",
                    args=[
                        {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                        {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
                        {"index": 1, "value": 3, "op": "SCMP_CMP_GT"},
                    ],
                )
            ],
        },
        [
            ("init", ALLOW),
            *attrs(),
            *[
                ("rule", errno(1), NR[name], (cond,))
                for name in ("read", "write")
                for cond in ((0, sc.CMP_EQ, 1, 0), (0, sc.CMP_EQ, 2, 0), (1, sc.CMP_GT, 3, 0))
            ],
            ("load",),
            ("release",),
        ],
    ),
    (
        "every operator",
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                call(["kill"], "SCMP_ACT_ERRNO", args=[{"index": i, "value": i, "op": op}])
                for i, op in enumerate(
                    ["SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT"]
                )
            ],
        },
        [
            ("init", ALLOW),
            *attrs(),
            *[("rule", errno(1), NR["kill"], ((i, i + 1, i, 0),)) for i in range(6)],
            ("load",),
            ("release",),
        ],
    ),
    (
        "explicit flags are attributes; an explicit empty list means no SPEC_ALLOW",
        {
            "defaultAction": "SCMP_ACT_LOG",
            "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_TSYNC"],
            "syscalls": [call(["read"], "SCMP_ACT_ALLOW")],
        },
        [
            ("init", LOG),
            *attrs((sc.ATTR_CTL_LOG, 1), (sc.ATTR_CTL_TSYNC, 1), ssb=False),
            ("rule", ALLOW, NR["read"], ()),
            ("load",),
            ("release",),
        ],
    ),
    (
        "defaultErrnoRet and architectures (native one included)",
        {
            "defaultAction": "SCMP_ACT_TRACE",
            "defaultErrnoRet": 99,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"],
            "flags": [],
            "syscalls": [call(["read"], "SCMP_ACT_ALLOW")],
        },
        [
            ("init", sc.act_trace(99)),
            ("arch", X86_64),
            ("arch", X86),
            ("arch", ARCH_AARCH64),
            *attrs(ssb=False),
            ("rule", ALLOW, NR["read"], ()),
            ("load",),
            ("release",),
        ],
    ),
    (
        "more than 32 names turn on libseccomp's binary tree",
        {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [call(["read"] * 33, "SCMP_ACT_ERRNO")]},
        [
            ("init", ALLOW),
            *attrs((OPT, 2)),
            *[("rule", errno(1), NR["read"], ())] * 33,
            ("load",),
            ("release",),
        ],
    ),
]


@pytest.mark.parametrize(("profile", "expected"), [(p, e) for _, p, e in TABLE], ids=[t[0] for t in TABLE])
def test_translation(profile: dict[str, Any], expected: list[tuple[Any, ...]]) -> None:
    seccomp.validate(profile)
    assert run(profile) == expected


@pytest.mark.parametrize("profile", [{}, {"defaultAction": ""}, {"defaultAction": "", "syscalls": []}])
def test_no_default_action_and_no_syscalls_means_no_filter(profile: dict[str, Any]) -> None:
    assert seccomp.parse(profile) is None
    assert run(profile) == []


def test_absent_flags_skip_spec_allow_when_the_host_lacks_it() -> None:
    calls = run(
        {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"], "syscalls": _GETRANDOM},
        unsupported_attrs=[SSB],
    )
    assert ("attr", SSB, 1) not in calls
    assert calls[-1] == ("release",)
    assert calls[-2][0] == "load_program" and calls[-2][2] == 0


def test_requested_flag_the_host_lacks_is_unsupported() -> None:
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"]}
    with pytest.raises(Unsupported, match=r"linux\.seccomp\.flags\[0\]: SECCOMP_FILTER_FLAG_SPEC_ALLOW"):
        run(profile, unsupported_attrs=[SSB])


class _RefusingFilter(FakeFilter):
    def add_rule(self, action: int, syscall: int, conditions: Any = ()) -> None:
        if syscall == NR["mkdir"]:
            raise SystemFailure("seccomp: adding rule: Operation not permitted", errno=1)
        super().add_rule(action, syscall, conditions)


class _RefusingBackend(FakeBackend):
    def new_filter(self, default_action: int) -> FakeFilter:
        return _RefusingFilter(self, default_action)


def test_libseccomp_errors_name_the_rule_and_the_filter_is_released() -> None:
    backend = _RefusingBackend()
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [call(["read"], "SCMP_ACT_KILL"), call(["mkdir"], "SCMP_ACT_ERRNO")],
    }
    with pytest.raises(
        SystemFailure, match=r"^linux\.seccomp\.syscalls\[1\] \(mkdir\): seccomp: adding"
    ) as info:
        seccomp.install(profile, backend)
    assert info.value.errno == 1
    assert ("rule", KILL, NR["read"], ()) in backend.calls
    assert backend.calls[-1] == ("release",)


# --- ENOSYS stub -----------------------------------------------------------------------------------------


def test_refusing_default_gets_the_enosys_stub_in_front_of_the_filter() -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "syscalls": [call(["read", "write", "getrandom"], "SCMP_ACT_ALLOW")],
    }
    backend = FakeBackend()
    seccomp.install(profile, backend)
    assert backend.calls[-3] == ("export",)
    kind, program, flags = backend.calls[-2]
    assert kind == "load_program"
    assert flags == sc.FILTER_FLAG_LOG | sc.FILTER_FLAG_SPEC_ALLOW
    assert program.endswith(backend.exported)
    assert ("load",) not in backend.calls
    # highest named: getrandom (318 on x86_64, 355 on i386, 318|x32 bit on x32)
    assert run_bpf(program, 318, X86_64) == ALLOW  # falls through to the (fake) filter
    assert run_bpf(program, 319, X86_64) == ENOSYS_RET
    assert run_bpf(program, 355, X86) == ALLOW
    assert run_bpf(program, 356, X86) == ENOSYS_RET
    assert run_bpf(program, 318 | 0x40000000, X86_64) == ALLOW
    assert run_bpf(program, 319 | 0x40000000, X86_64) == ENOSYS_RET
    assert run_bpf(program, 5000, ARCH_AARCH64) == ALLOW  # not listed: the filter decides


@pytest.mark.parametrize(
    "profile",
    [
        {"defaultAction": "SCMP_ACT_ALLOW", "architectures": _X86_64_ONLY, "syscalls": _GETRANDOM},
        {"defaultAction": "SCMP_ACT_LOG", "architectures": _X86_64_ONLY, "syscalls": _GETRANDOM},
        {"defaultAction": "SCMP_ACT_TRACE", "architectures": _X86_64_ONLY, "syscalls": _GETRANDOM},
        {
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "architectures": _X86_64_ONLY,
            "syscalls": _GETRANDOM,
        },
        # no architecture to compare syscall numbers for
        {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": _GETRANDOM},
        # no syscall named that this architecture has
        {
            "defaultAction": "SCMP_ACT_KILL",
            "architectures": _X86_64_ONLY,
            "syscalls": [call(["nope"], "SCMP_ACT_ALLOW")],
        },
    ],
    ids=["allow", "log", "trace", "errno-enosys", "no-architectures", "no-known-syscall"],
)
def test_no_stub_when_it_would_change_nothing(profile: dict[str, Any]) -> None:
    calls = run(profile)
    assert calls[-2:] == [("load",), ("release",)]
    assert ("export",) not in calls


def test_stub_without_x32_leaves_x32_calls_to_the_filter() -> None:
    stub = seccomp.enosys_stub([(X86_64, 100)])
    program = stub + FakeBackend().exported
    assert run_bpf(program, 101, X86_64) == ENOSYS_RET
    assert run_bpf(program, 100, X86_64) == ALLOW
    assert run_bpf(program, 0x40000000 | 500, X86_64) == ALLOW


def test_stub_with_only_x32_leaves_x86_64_calls_to_the_filter() -> None:
    program = seccomp.enosys_stub([(X32, 0x40000000 | 100)]) + FakeBackend().exported
    assert run_bpf(program, 0x40000000 | 101, X86_64) == ENOSYS_RET
    assert run_bpf(program, 0x40000000 | 100, X86_64) == ALLOW
    assert run_bpf(program, 500, X86_64) == ALLOW


def test_stub_on_s390x_refuses_the_multiplexer() -> None:
    program = seccomp.enosys_stub([(sc.ARCH_S390X, 300)]) + FakeBackend().exported
    assert run_bpf(program, 0, sc.ARCH_S390X) == ENOSYS_RET
    assert run_bpf(program, 1, sc.ARCH_S390X) == ALLOW
    assert run_bpf(program, 301, sc.ARCH_S390X) == ENOSYS_RET


def test_no_stub_without_architectures() -> None:
    assert seccomp.enosys_stub([]) == b""


# --- errors ----------------------------------------------------------------------------------------------

ALLOW_ALL = {"defaultAction": "SCMP_ACT_ALLOW"}


def with_call(**fields: Any) -> dict[str, Any]:
    return {**ALLOW_ALL, "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", **fields}]}


def with_arg(**arg: Any) -> dict[str, Any]:
    return with_call(args=[{"index": 0, "value": 1, "op": "SCMP_CMP_EQ", **arg}])


OK_CALL = call(["read"], "SCMP_ACT_ALLOW")
BAD: list[tuple[dict[str, Any], type[Exception], str]] = [
    (
        {"defaultAction": "SCMP_ACT_NOPE"},
        InvalidArgument,
        r'^linux\.seccomp\.defaultAction: unknown action "SCMP_ACT_NOPE"$',
    ),
    ({"syscalls": [OK_CALL]}, InvalidArgument, r"^linux\.seccomp\.defaultAction: unknown action None$"),
    (
        {**ALLOW_ALL, "syscalls": [OK_CALL, {}, {}]},
        InvalidArgument,
        r"^linux\.seccomp\.syscalls\[1\]\.action: unknown action None$",
    ),
    (
        {**ALLOW_ALL, "syscalls": [OK_CALL, OK_CALL, OK_CALL, call(["x"], "X")]},
        InvalidArgument,
        r'^linux\.seccomp\.syscalls\[3\]\.action: unknown action "X"$',
    ),
    (
        {**ALLOW_ALL, "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_Z80"]},
        InvalidArgument,
        r'^linux\.seccomp\.architectures\[1\]: unknown architecture "SCMP_ARCH_Z80"$',
    ),
    (
        {**ALLOW_ALL, "flags": ["SECCOMP_FILTER_FLAG_FAST"]},
        InvalidArgument,
        r'^linux\.seccomp\.flags\[0\]: unknown seccomp flag "SECCOMP_FILTER_FLAG_FAST"$',
    ),
    (
        with_arg(op="SCMP_CMP_APPROX"),
        InvalidArgument,
        r'^linux\.seccomp\.syscalls\[0\]\.args\[0\]\.op: unknown operator "SCMP_CMP_APPROX"$',
    ),
    (
        with_arg(index=6),
        InvalidArgument,
        r"^linux\.seccomp\.syscalls\[0\]\.args\[0\]\.index: must be an integer from 0 to 5, got 6$",
    ),
    (
        with_arg(value=-1),
        InvalidArgument,
        r"^linux\.seccomp\.syscalls\[0\]\.args\[0\]\.value: must be an integer",
    ),
    (with_arg(value=1 << 64), InvalidArgument, r"^linux\.seccomp\.syscalls\[0\]\.args\[0\]\.value: must be"),
    (
        with_arg(valueTwo=1.5),
        InvalidArgument,
        r"^linux\.seccomp\.syscalls\[0\]\.args\[0\]\.valueTwo: must be an integer",
    ),
    (
        with_call(args=[3]),
        InvalidArgument,
        r"^linux\.seccomp\.syscalls\[0\]\.args\[0\]: must be an object, got 3$",
    ),
    (
        with_call(args={"index": 0}),
        InvalidArgument,
        r"^linux\.seccomp\.syscalls\[0\]\.args: must be an array",
    ),
    (
        with_call(errnoRet="EPERM"),
        InvalidArgument,
        r'^linux\.seccomp\.syscalls\[0\]\.errnoRet: must be an integer from 0 to 65535, got "EPERM"$',
    ),
    (
        {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": True},
        InvalidArgument,
        r"^linux\.seccomp\.defaultErrnoRet: must be an integer",
    ),
    (
        with_call(names=["read", ""]),
        InvalidArgument,
        r"^linux\.seccomp\.syscalls\[0\]\.names\[1\]: must be a syscall",
    ),
    (with_call(names="read"), InvalidArgument, r"^linux\.seccomp\.syscalls\[0\]\.names: must be an array"),
    (
        {**ALLOW_ALL, "syscalls": {"names": ["read"]}},
        InvalidArgument,
        r"^linux\.seccomp\.syscalls: must be an array",
    ),
    (
        {**ALLOW_ALL, "syscalls": ["read"]},
        InvalidArgument,
        r'^linux\.seccomp\.syscalls\[0\]: must be an object, got "read"$',
    ),
    (
        {"defaultAction": "SCMP_ACT_NOTIFY"},
        Unsupported,
        r"^linux\.seccomp\.defaultAction: SCMP_ACT_NOTIFY is not supported.*listenerPath",
    ),
    (
        {
            **ALLOW_ALL,
            "listenerPath": "/run/agent.sock",
            "syscalls": [OK_CALL, call(["mkdir"], "SCMP_ACT_NOTIFY")],
        },
        Unsupported,
        r"^linux\.seccomp\.syscalls\[1\]\.action: SCMP_ACT_NOTIFY is not supported",
    ),
]


@pytest.mark.parametrize(("profile", "error", "message"), BAD)
def test_bad_profiles_are_refused_before_libseccomp_is_touched(
    profile: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        seccomp.validate(profile)
    backend = FakeBackend()
    with pytest.raises(error, match=message):
        seccomp.install(profile, backend)
    assert backend.calls == []


def test_not_an_object() -> None:
    with pytest.raises(InvalidArgument, match=r"^linux\.seccomp: must be an object"):
        seccomp.validate(["SCMP_ACT_ALLOW"])  # type: ignore[arg-type]


def test_architecture_this_libseccomp_lacks_is_unsupported() -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_LOONGARCH64"],
    }
    seccomp.validate(profile)  # valid for the spec
    with pytest.raises(Unsupported, match=r'^linux\.seccomp\.architectures\[1\]: .*"SCMP_ARCH_LOONGARCH64"'):
        run(profile)


def test_every_spec_name_is_known() -> None:
    # runtime-spec 1.1 config-linux.md lists these; a typo in our tables would make valid configs fail
    assert set(seccomp.ACTIONS) == {
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_LOG",
        "SCMP_ACT_NOTIFY",
    }
    assert {
        "SCMP_ARCH_X86",
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_X32",
        "SCMP_ARCH_ARM",
        "SCMP_ARCH_AARCH64",
        "SCMP_ARCH_MIPS",
        "SCMP_ARCH_MIPS64",
        "SCMP_ARCH_MIPS64N32",
        "SCMP_ARCH_MIPSEL",
        "SCMP_ARCH_MIPSEL64",
        "SCMP_ARCH_MIPSEL64N32",
        "SCMP_ARCH_PPC",
        "SCMP_ARCH_PPC64",
        "SCMP_ARCH_PPC64LE",
        "SCMP_ARCH_S390",
        "SCMP_ARCH_S390X",
        "SCMP_ARCH_PARISC",
        "SCMP_ARCH_PARISC64",
        "SCMP_ARCH_RISCV64",
    } <= set(seccomp.ARCHITECTURES)
    assert set(seccomp.FLAGS) == {
        "SECCOMP_FILTER_FLAG_TSYNC",
        "SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    }
    assert set(seccomp.OPERATORS) == {
        "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ",
    }  # fmt: skip


# --- through the real libseccomp, without loading anything --------------------------------------------


class _ExportInsteadOfLoad(sc.LibSeccomp):
    """libseccomp builds the filter for real; what would be loaded is kept instead."""

    def __init__(self) -> None:
        self.loaded: list[tuple[bytes, int | None]] = []

    def new_filter(self, default_action: int) -> sc.SeccompFilter:
        outer = self

        class Capturing(sc.SeccompFilter):
            def load(self) -> None:
                outer.loaded.append((self.export_bpf(), None))

        return Capturing(default_action)

    def load_program(self, program: bytes, flags: int) -> None:
        self.loaded.append((program, flags))


@pytest.fixture
def libseccomp() -> _ExportInsteadOfLoad:
    try:
        sc.version()
    except Unsupported as exc:
        pytest.skip(str(exc))
    return _ExportInsteadOfLoad()


def test_real_libseccomp_program_with_stub(libseccomp: _ExportInsteadOfLoad) -> None:
    nr = {
        name: sc.syscall_resolve(name, X86_64)
        for name in ("read", "write", "mkdir", "getrandom", "memfd_create")
    }
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [
            call(["read", "write", "getrandom"], "SCMP_ACT_ALLOW"),
            call(["mkdir"], "SCMP_ACT_ERRNO", errnoRet=13,
                 args=[{"index": 1, "value": 0o777, "valueTwo": 0o700, "op": "SCMP_CMP_MASKED_EQ"}]),
        ],
    }  # fmt: skip
    seccomp.install(profile, libseccomp)
    [(program, flags)] = libseccomp.loaded
    assert flags is not None  # the stub path: loaded by ketch, not by seccomp_load
    assert run_bpf(program, nr["read"], X86_64) == ALLOW
    assert run_bpf(program, nr["mkdir"], X86_64, [0, 0o40700]) == errno(13)
    assert run_bpf(program, nr["mkdir"], X86_64, [0, 0o755]) == errno(1)
    assert run_bpf(program, nr["memfd_create"], X86_64) == ENOSYS_RET  # newer than any named syscall
    assert run_bpf(program, 3, X86) == ALLOW  # read on i386
    assert run_bpf(program, 5, X86) == errno(1)  # open on i386: named nowhere, older than getrandom
    assert run_bpf(program, 3, sc.ARCH_S390X) == KILL  # libseccomp's bad-architecture action


def test_real_libseccomp_program_without_stub(libseccomp: _ExportInsteadOfLoad) -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [call(["mkdir", "not_a_syscall"], "SCMP_ACT_ERRNO", errnoRet=38)],
    }
    seccomp.install(profile, libseccomp)
    [(program, flags)] = libseccomp.loaded
    assert flags is None  # seccomp_load would have loaded it
    assert run_bpf(program, 83, X86_64) == ENOSYS_RET
    assert run_bpf(program, 84, X86_64) == ALLOW


def test_compile_program_exports_without_loading() -> None:
    """What a container's init does before pivot_root: the same filter as install() builds, exported as BPF."""
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [call(["mkdir"], "SCMP_ACT_ERRNO")]}
    backend = FakeBackend()
    compiled = seccomp.compile_program(profile, backend)
    assert compiled is not None
    program, flags = compiled
    assert program == backend.exported and isinstance(flags, int)
    kinds = [c[0] for c in backend.calls]
    assert "load" not in kinds and "export" in kinds and kinds[-1] == "release"
    # the rules are the ones install() would add
    installed = run(profile)
    assert [c for c in backend.calls if c[0] == "rule"] == [c for c in installed if c[0] == "rule"]
    assert seccomp.compile_program({}, FakeBackend()) is None
