"""Docker's default capabilities and seccomp profile, and the conversion of Docker-format profiles."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from tests.fakes.seccomp_fake import FakeBackend, run_bpf

from ketch.common.errors import InvalidArgument, Unsupported
from ketch.runtime import seccomp as runtime_seccomp
from ketch.spec import seccomp_default
from ketch.spec.capabilities import CAPABILITIES
from ketch.spec.oci_runtime import default_spec, validate
from ketch.spec.seccomp_profile import (
    DEFAULT_CAPABILITIES,
    default_profile,
    docker_arch,
    effective_capabilities,
    from_docker_profile,
)
from ketch.sys import seccomp as sc

KERNEL = (6, 1)  # a fixed kernel, so results do not depend on the host's
DEFAULTS = list(DEFAULT_CAPABILITIES)
X86_64_ARCHES = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]


def profile_for(caps: list[str], arch: str = "x86_64", kernel: tuple[int, int] = KERNEL) -> dict[str, Any]:
    return default_profile(caps, arch, kernel=kernel)


def allowed(profile: dict[str, Any]) -> set[str]:
    """Syscalls the profile allows whatever their arguments."""
    return {
        name
        for call in profile["syscalls"]
        if call["action"] == "SCMP_ACT_ALLOW" and not call.get("args")
        for name in call["names"]
    }


def rules_for(profile: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [call for call in profile["syscalls"] if name in call["names"]]


# --- capabilities ----------------------------------------------------------------------------------------


def test_default_capabilities_are_dockers_fourteen() -> None:
    assert len(DEFAULT_CAPABILITIES) == len(set(DEFAULT_CAPABILITIES)) == 14
    assert set(DEFAULT_CAPABILITIES) <= set(CAPABILITIES)
    assert "CAP_SYS_ADMIN" not in DEFAULT_CAPABILITIES and "CAP_NET_ADMIN" not in DEFAULT_CAPABILITIES
    assert effective_capabilities([], [], False) == DEFAULTS


@pytest.mark.parametrize(
    "add,drop,expected",
    [
        (["sys_admin", "CAP_NET_ADMIN", "Net_Raw"], [], [*DEFAULTS, "CAP_SYS_ADMIN", "CAP_NET_ADMIN"]),
        ([], ["chown", "CAP_KILL"], [c for c in DEFAULTS if c not in ("CAP_CHOWN", "CAP_KILL")]),
        (["NET_ADMIN"], ["NET_ADMIN"], [*DEFAULTS, "CAP_NET_ADMIN"]),  # Docker drops first, then adds
        (["all"], ["mknod"], [c for c in CAPABILITIES if c != "CAP_MKNOD"]),
        (["ALL"], ["ALL"], list(CAPABILITIES)),  # ALL in CapAdd wins
        (["chown", "cap_kill"], ["ALL"], ["CAP_CHOWN", "CAP_KILL"]),
        ([], ["ALL"], []),
    ],
)
def test_effective_capabilities(add: list[str], drop: list[str], expected: list[str]) -> None:
    assert effective_capabilities(add, drop, False) == expected


def test_privileged_gets_every_known_capability() -> None:
    assert effective_capabilities([], ["ALL"], True) == list(CAPABILITIES)
    assert effective_capabilities(["NET_ADMIN"], ["CHOWN"], True) == list(CAPABILITIES)


@pytest.mark.parametrize(
    "add,drop,privileged,message",
    [
        (["foo"], [], False, 'invalid CapAdd: unknown capability: "CAP_FOO"'),
        (["CHOWN", "cap_bar"], [], False, 'invalid CapAdd: unknown capability: "CAP_BAR"'),
        ([], ["CAP_ALL"], False, 'invalid CapDrop: unknown capability: "CAP_ALL"'),
        (["foo"], [], True, 'invalid CapAdd: unknown capability: "CAP_FOO"'),  # checked even when privileged
    ],
)
def test_unknown_capabilities_are_refused(
    add: list[str], drop: list[str], privileged: bool, message: str
) -> None:
    with pytest.raises(InvalidArgument) as err:
        effective_capabilities(add, drop, privileged)
    assert str(err.value) == message


# --- the default profile ---------------------------------------------------------------------------------


def test_default_profile_shape() -> None:
    profile = profile_for(DEFAULTS)
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert profile["defaultErrnoRet"] == 1
    assert profile["architectures"] == X86_64_ARCHES
    assert {"read", "write", "execve", "openat", "mkdir", "chroot", "arch_prctl", "modify_ldt"} <= allowed(
        profile
    )
    assert not {
        "io_uring_setup",
        "io_uring_enter",
        "keyctl",
        "add_key",
        "kexec_load",
        "userfaultfd",
    } & allowed(profile)


def test_default_profile_is_a_valid_oci_seccomp_section() -> None:
    for caps in (DEFAULTS, list(CAPABILITIES), []):
        profile = profile_for(caps)
        config = default_spec()
        config["linux"]["seccomp"] = profile
        validate(json.loads(json.dumps(config)))
        parsed = runtime_seccomp.parse(profile)
        assert parsed is not None and parsed.architectures == X86_64_ARCHES
        assert parsed.default_action == sc.act_errno(1)


@pytest.mark.parametrize(
    "arch,architectures",
    [
        ("x86_64", X86_64_ARCHES),
        ("amd64", X86_64_ARCHES),
        ("SCMP_ARCH_X86_64", X86_64_ARCHES),
        ("aarch64", ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]),
        ("s390x", ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"]),
        ("riscv64", ["SCMP_ARCH_RISCV64"]),
        ("i686", None),  # no archMap entry: libseccomp's native architecture only, as with Docker
    ],
)
def test_arch_map_is_narrowed_to_the_host(arch: str, architectures: list[str] | None) -> None:
    assert profile_for(DEFAULTS, arch).get("architectures") == architectures


def test_architecture_specific_syscalls() -> None:
    assert {"arch_prctl", "modify_ldt"} <= allowed(profile_for(DEFAULTS, "x86_64"))
    i386 = allowed(profile_for(DEFAULTS, "i686"))
    assert "modify_ldt" in i386 and "arch_prctl" not in i386
    arm64 = allowed(profile_for(DEFAULTS, "aarch64"))
    assert {"cacheflush", "set_tls", "sync_file_range2"} <= arm64 and "modify_ldt" not in arm64
    assert "s390_runtime_instr" in allowed(profile_for(DEFAULTS, "s390x"))


def test_unknown_architecture_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="unknown architecture 'vax'"):
        profile_for(DEFAULTS, "vax")
    assert docker_arch("armv7l") == "arm" and docker_arch("SCMP_ARCH_AARCH64") == "arm64"


@pytest.mark.parametrize(
    "cap,syscalls",
    [
        ("CAP_SYS_ADMIN", ["mount", "umount2", "unshare", "setns", "sethostname", "fsopen", "bpf"]),
        ("CAP_SYS_PTRACE", ["kcmp", "pidfd_getfd", "process_madvise"]),
        ("CAP_SYS_MODULE", ["init_module", "finit_module", "delete_module"]),
        ("CAP_SYS_BOOT", ["reboot"]),
        ("CAP_SYS_TIME", ["settimeofday", "clock_settime"]),
        ("CAP_SYS_NICE", ["mbind", "set_mempolicy"]),
        ("CAP_SYS_PACCT", ["acct"]),
        ("CAP_SYS_RAWIO", ["iopl", "ioperm"]),
        ("CAP_SYS_TTY_CONFIG", ["vhangup"]),
        ("CAP_SYSLOG", ["syslog"]),
        ("CAP_BPF", ["bpf"]),
        ("CAP_PERFMON", ["perf_event_open"]),
        ("CAP_DAC_READ_SEARCH", ["open_by_handle_at"]),
    ],
)
def test_capabilities_unlock_syscalls(cap: str, syscalls: list[str]) -> None:
    without = allowed(profile_for(DEFAULTS))
    with_cap = allowed(profile_for([*DEFAULTS, cap]))
    for name in syscalls:
        assert name not in without, name
        assert name in with_cap, name


def test_chroot_follows_cap_sys_chroot() -> None:
    assert "chroot" in allowed(profile_for(DEFAULTS))
    assert "chroot" not in allowed(profile_for(effective_capabilities([], ["SYS_CHROOT"], False)))


def test_capability_names_are_normalised() -> None:
    assert "mount" in allowed(profile_for(["sys_admin"]))
    assert "mount" in allowed(profile_for(["CAP_SYS_ADMIN"]))


def test_clone_rules_depend_on_cap_sys_admin() -> None:
    plain = profile_for(DEFAULTS)
    assert rules_for(plain, "clone") == [
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": seccomp_default.NAMESPACE_FLAGS, "op": "SCMP_CMP_MASKED_EQ"}],
        }
    ]
    assert seccomp_default.NAMESPACE_FLAGS == 0x7E020000
    assert rules_for(plain, "clone3") == [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    admin = profile_for([*DEFAULTS, "CAP_SYS_ADMIN"])
    assert {"clone", "clone3"} <= allowed(admin)
    assert all(
        not call.get("args") and call["action"] == "SCMP_ACT_ALLOW" for call in rules_for(admin, "clone")
    )
    assert all(call["action"] == "SCMP_ACT_ALLOW" for call in rules_for(admin, "clone3"))
    # s390 passes clone's flags as the second argument
    [s390_clone] = rules_for(profile_for(DEFAULTS, "s390x"), "clone")
    assert s390_clone["args"][0]["index"] == 1


def test_ptrace_needs_kernel_4_8_without_cap_sys_ptrace() -> None:
    assert "ptrace" in allowed(profile_for(DEFAULTS, kernel=(4, 8)))
    assert "ptrace" not in allowed(profile_for(DEFAULTS, kernel=(4, 4)))
    assert "ptrace" in allowed(profile_for([*DEFAULTS, "CAP_SYS_PTRACE"], kernel=(4, 4)))


def test_argument_rules() -> None:
    profile = profile_for(list(CAPABILITIES))
    assert rules_for(profile, "socket") == [
        {
            "names": ["socket"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}],
        }
    ]
    personalities = sorted(call["args"][0]["value"] for call in rules_for(profile, "personality"))
    assert personalities == [0, 8, 0x20000, 0x20008, 0xFFFFFFFF]


def test_docker_format_round_trip() -> None:
    text = json.dumps(seccomp_default.docker_profile())
    for caps in (DEFAULTS, list(CAPABILITIES)):
        assert from_docker_profile(text, caps, "x86_64", kernel=KERNEL) == profile_for(caps)
    # each call builds a fresh object
    first = seccomp_default.docker_profile()
    first["syscalls"].clear()
    assert seccomp_default.docker_profile()["syscalls"]


# --- through ketch-runtime's translation ------------------------------------------------------------------

# Real x86_64 numbers for the syscalls these tests look at; the fake resolves only what it knows.
_X86_64_EXTRA = {
    "mount": 165, "umount2": 166, "unshare": 272, "setns": 308, "clone": 56, "socket": 41, "personality": 135,
    "ptrace": 101, "chroot": 161, "reboot": 169, "io_uring_setup": 425,
}  # fmt: skip


class _Backend(FakeBackend):
    def syscall_resolve(self, name: str, arch: int = 0) -> int | None:
        if (arch or self.native) == sc.ARCH_X86_64 and name in _X86_64_EXTRA:
            return _X86_64_EXTRA[name]
        return super().syscall_resolve(name, arch)


def _rules(profile: dict[str, Any]) -> dict[int, list[tuple[int, tuple[Any, ...]]]]:
    backend = _Backend()
    runtime_seccomp.install(profile, backend)
    out: dict[int, list[tuple[int, tuple[Any, ...]]]] = {}
    for call in backend.calls:
        if call[0] == "rule":
            out.setdefault(call[2], []).append((call[1], call[3]))
    assert ("load_program" in [c[0] for c in backend.calls]) or ("load" in [c[0] for c in backend.calls])
    return out


def test_runtime_translation_of_the_default_profile() -> None:
    nr = {**_X86_64_EXTRA, "getpid": 39, "clone3": 435}
    allow, eperm = sc.ACT_ALLOW, sc.act_errno(1)
    plain = _rules(profile_for(DEFAULTS))
    assert plain[nr["getpid"]] == [(allow, ())]
    assert plain[nr["chroot"]] == [(allow, ())]
    for name in ("mount", "umount2", "unshare", "setns", "reboot", "io_uring_setup"):
        assert nr[name] not in plain, name  # left to the default action, EPERM
    assert plain[nr["clone3"]] == [(sc.act_errno(38), ())]
    assert plain[nr["clone"]] == [(allow, ((0, sc.CMP_MASKED_EQ, 0x7E020000, 0),))]
    assert plain[nr["socket"]] == [(allow, ((0, sc.CMP_NE, 40, 0),))]
    assert len(plain[nr["personality"]]) == 5
    admin = _rules(profile_for([*DEFAULTS, "CAP_SYS_ADMIN"]))
    for name in ("mount", "umount2", "unshare", "setns", "clone3"):
        assert admin[nr[name]] == [(allow, ())], name
    assert (allow, ()) in admin[nr["clone"]]
    assert eperm not in [action for rules in admin.values() for action, _ in rules]


@pytest.fixture
def libseccomp() -> sc.LibSeccomp:
    try:
        sc.version()
    except Unsupported as exc:
        pytest.skip(str(exc))
    return sc.LibSeccomp()


def test_real_libseccomp_program_for_the_default_profile(libseccomp: sc.LibSeccomp) -> None:
    """libseccomp compiles the profile (nothing is loaded); the program is then run on made-up syscalls."""

    def verdicts(caps: list[str]) -> dict[str, int]:
        compiled = runtime_seccomp.compile_program(profile_for(caps), libseccomp)
        assert compiled is not None
        program = compiled[0]

        def run(name: str, *args: int, arch: int = sc.ARCH_X86_64) -> int:
            number = sc.syscall_resolve(name, arch)
            assert number is not None, name
            return run_bpf(program, number, arch, list(args))

        sigchld, newuser, newns = 17, 0x10000000, 0x00020000
        return {
            "getpid": run("getpid"),
            "mount": run("mount"),
            "unshare": run("unshare", newns),
            "clone": run("clone", sigchld),
            "clone_newuser": run("clone", sigchld | newuser),
            "clone3": run("clone3"),
            "socket_inet": run("socket", 2, 1),
            "socket_vsock": run("socket", 40, 1),
            "personality_query": run("personality", 0xFFFFFFFF),
            "personality_exec": run("personality", 0x0400000),  # READ_IMPLIES_EXEC
            "io_uring_setup": run("io_uring_setup"),
            "i386_socketcall": run("socketcall", arch=sc.ARCH_X86),
            "i386_mount": run("mount", arch=sc.ARCH_X86),
            "beyond_the_table": run_bpf(program, 1000, sc.ARCH_X86_64),
        }

    allow, eperm, enosys = sc.ACT_ALLOW, sc.act_errno(1), sc.act_errno(38)
    assert verdicts(DEFAULTS) == {
        "getpid": allow,
        "mount": eperm,
        "unshare": eperm,
        "clone": allow,
        "clone_newuser": eperm,
        "clone3": enosys,
        "socket_inet": allow,
        "socket_vsock": eperm,
        "personality_query": allow,
        "personality_exec": eperm,
        "io_uring_setup": eperm,
        "i386_socketcall": allow,
        "i386_mount": eperm,
        "beyond_the_table": enosys,  # newer than every syscall the profile names: ENOSYS, not EPERM
    }
    admin = verdicts([*DEFAULTS, "CAP_SYS_ADMIN"])
    for name in ("mount", "unshare", "clone", "clone_newuser", "clone3", "i386_mount"):
        assert admin[name] == allow, name
    assert admin["socket_vsock"] == eperm and admin["io_uring_setup"] == eperm


# --- Docker-format profiles ------------------------------------------------------------------------------


def test_conversion_of_a_small_profile() -> None:
    text = """{
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"name": "mkdir", "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "comment": "no directories"},
            {"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO", "args": [
                {"index": 2, "value": 511, "valueTwo": 448, "op": "SCMP_CMP_MASKED_EQ"},
                {"index": 1, "op": "SCMP_CMP_EQ"}
            ]},
            {"names": ["reboot"], "action": "SCMP_ACT_KILL_PROCESS", "args": null, "includes": {}, "excludes": null}
        ]
    }"""
    assert from_docker_profile(text, DEFAULTS, "x86_64", kernel=KERNEL) == {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {
                "names": ["mkdirat"],
                "action": "SCMP_ACT_ERRNO",
                "args": [
                    {"index": 2, "value": 511, "valueTwo": 448, "op": "SCMP_CMP_MASKED_EQ"},
                    {"index": 1, "value": 0, "op": "SCMP_CMP_EQ"},
                ],
            },
            {"names": ["reboot"], "action": "SCMP_ACT_KILL_PROCESS"},
        ],
    }


def test_conversion_keeps_flags_listener_and_errno_and_accepts_bytes() -> None:
    obj = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "listenerPath": "/run/agent.sock",
        "listenerMetadata": "x",
        "syscalls": [],
    }
    expected = {k: v for k, v in obj.items()}
    assert from_docker_profile(obj, [], "x86_64") == expected
    assert from_docker_profile(b"\xef\xbb\xbf" + json.dumps(obj).encode(), [], "x86_64") == expected


def test_keys_match_case_insensitively_like_gos_decoder() -> None:
    text = '{"DefaultAction": "SCMP_ACT_ALLOW", "SYSCALLS": [{"Names": ["mkdir"], "action": "SCMP_ACT_LOG"}]}'
    assert from_docker_profile(text, [], "x86_64") == {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_LOG"}],
    }


@pytest.mark.parametrize("text", ["{}", '{"syscalls": []}', '{"defaultAction": "", "syscalls": null}'])
def test_empty_profile_turns_seccomp_off(text: str) -> None:
    profile = from_docker_profile(text, DEFAULTS, "x86_64")
    assert profile == {}
    assert runtime_seccomp.parse(profile) is None


def test_filters_on_capabilities_arches_and_kernel() -> None:
    def call(name: str, **filters: Any) -> dict[str, Any]:
        return {"names": [name], "action": "SCMP_ACT_ALLOW", **filters}

    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "archMap": [
            {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": None},
        ],
        "syscalls": [
            call("both_caps", includes={"caps": ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]}),
            call("not_admin", excludes={"caps": ["CAP_SYS_ADMIN"]}),
            call("amd64_only", includes={"arches": ["amd64"]}),
            call("not_arm64", excludes={"arches": ["arm64"]}),
            call("new_kernel", includes={"minKernel": "5.10"}),
            call("old_kernel", excludes={"minKernel": "5.10"}),
        ],
    }

    def names(caps: list[str], arch: str, kernel: tuple[int, int]) -> list[str]:
        out = from_docker_profile(copy.deepcopy(profile), caps, arch, kernel=kernel)
        return [n for c in out["syscalls"] for n in c["names"]]

    assert names(["CAP_SYS_ADMIN"], "x86_64", (5, 4)) == ["amd64_only", "not_arm64", "old_kernel"]
    assert names(["CAP_SYS_ADMIN", "CAP_NET_ADMIN"], "aarch64", (5, 10)) == ["both_caps", "new_kernel"]
    assert names([], "aarch64", (6, 0)) == ["not_admin", "new_kernel"]
    archs = from_docker_profile(profile, [], "aarch64", kernel=KERNEL)["architectures"]
    assert archs == ["SCMP_ARCH_AARCH64"]
    assert "architectures" not in from_docker_profile(profile, [], "ppc64le", kernel=KERNEL)


def _with_call(**call: Any) -> dict[str, Any]:
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", **call}],
    }


@pytest.mark.parametrize(
    "profile,message",
    [
        ("{not json", "Decoding seccomp profile failed: "),
        ("[1]", "Decoding seccomp profile failed: profile: must be an object, got an array"),
        ({"defaultAction": "SCMP_ACT_FOO"}, 'defaultAction: unknown action "SCMP_ACT_FOO"'),
        ({"defaultAction": 3}, "defaultAction: must be a string, got 3"),
        ({"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}, "defaultAction: is required"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": "1"}, "defaultErrnoRet: must be an integer"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": {}}, "syscalls: must be an array, got an object"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": ["read"]}, 'syscalls[0]: must be an object, got "read"'),
        (_with_call(name="write"), "syscalls[0]: 'name' and 'names' were specified"),
        (_with_call(names=[]), "syscalls[0].names: must name at least one syscall"),
        (_with_call(names=["read", 5]), "syscalls[0].names[1]: must be a string, got 5"),
        (_with_call(names="read"), 'syscalls[0].names: must be an array of strings, got "read"'),
        (_with_call(action=None), "syscalls[0].action: is required"),
        (_with_call(action="ALLOW"), 'syscalls[0].action: unknown action "ALLOW"'),
        (_with_call(errnoRet=-1), "syscalls[0].errnoRet: must be an integer from 0 to 65535, got -1"),
        (_with_call(args=[{"index": 6, "op": "SCMP_CMP_EQ"}]), "syscalls[0].args[0].index: must be an integer"),
        (_with_call(args=[{"index": 0, "value": True, "op": "SCMP_CMP_EQ"}]), "syscalls[0].args[0].value:"),
        (_with_call(args=[{"index": 0, "value": 1}]), "syscalls[0].args[0].op: is required"),
        (_with_call(args=[{"index": 0, "op": "SCMP_CMP_FOO"}]), 'args[0].op: unknown operator "SCMP_CMP_FOO"'),
        (_with_call(args={"index": 0}), "syscalls[0].args: must be an array, got an object"),
        (_with_call(includes={"minKernel": "4"}), 'syscalls[0].includes.minKernel: invalid kernel version "4"'),
        (_with_call(excludes={"minKernel": "0.0"}), "version cannot be 0.0"),
        (_with_call(includes={"caps": "CAP_SYS_ADMIN"}), "syscalls[0].includes.caps: must be an array of strings"),
        (_with_call(excludes=[]), "syscalls[0].excludes: must be an object, got an array"),
        (
            {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
             "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]},
            "'architectures' and 'archMap' were specified in the seccomp profile",
        ),
        ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["x86_64"]}, 'architectures[0]: unknown architecture'),
        ({"defaultAction": "SCMP_ACT_ALLOW", "archMap": [{}]}, "archMap[0].architecture: is required"),
        (
            {"defaultAction": "SCMP_ACT_ALLOW", "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                                                             "subArchitectures": ["i386"]}]},
            'archMap[0].subArchitectures[0]: unknown architecture "i386"',
        ),
        ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["LOG"]}, 'flags[0]: unknown flag "LOG"'),
        ({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": 1}, "listenerPath: must be a string"),
    ],
)  # fmt: skip
def test_malformed_profiles_are_refused(profile: Any, message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        from_docker_profile(profile, DEFAULTS, "x86_64", kernel=KERNEL)
    assert str(err.value).startswith("Decoding seccomp profile failed: ")
    assert message in str(err.value)


def test_malformed_entries_are_refused_even_when_filtered_out() -> None:
    """Whether a profile is valid must not depend on the container it is applied to."""
    profile = _with_call(action="SCMP_ACT_NOPE", includes={"caps": ["CAP_SYS_ADMIN"]})
    with pytest.raises(InvalidArgument, match=r"syscalls\[0\]\.action"):
        from_docker_profile(profile, [], "x86_64", kernel=KERNEL)
