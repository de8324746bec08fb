"""Device rules: the emulation of the v1 kernel semantics, and the cgroup v2 eBPF program generated from it,
run here by a small interpreter of the instructions it may contain and compared with the emulation."""

from __future__ import annotations

import random
import struct

import pytest

from ketch.common.errors import InvalidArgument
from ketch.runtime.cgroups import devfilter
from ketch.runtime.cgroups.devices import (
    ACC_ALL,
    ACC_MKNOD,
    ACC_READ,
    ACC_WRITE,
    WILDCARD,
    Emulated,
    Rule,
    emulate,
    parse_rules,
)

BLOCK, CHAR = devfilter.DEV_BLOCK, devfilter.DEV_CHAR
KIND = {"b": BLOCK, "c": CHAR}


def run(prog: bytes, dev_type: int, major: int, minor: int, access: int) -> int:
    """Execute a BPF_PROG_TYPE_CGROUP_DEVICE program on one request. Knows only the opcodes the
    generator is allowed to use and fails on anything else, a jump out of range or a missing exit."""
    assert len(prog) % 8 == 0 and prog
    insns = [struct.unpack("<BBhi", prog[i : i + 8]) for i in range(0, len(prog), 8)]
    ctx = struct.pack("<III", (access << 16) | dev_type, major, minor)
    regs = [0] * 11
    regs[1] = -1  # pointer to ctx; only loads through R1 are valid
    mask = (1 << 64) - 1
    pc = 0
    for _ in range(10_000):
        assert 0 <= pc < len(insns), f"pc {pc} out of the program"
        code, regbyte, off, imm = insns[pc]
        dst, src = regbyte & 0xF, regbyte >> 4
        pc += 1
        if code == 0x61:  # ldx w
            assert regs[src] == -1 and off in (0, 4, 8)
            regs[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif code == 0x57:
            regs[dst] = regs[dst] & (imm & mask)
        elif code == 0x77:
            regs[dst] = regs[dst] >> imm
        elif code == 0xB7:
            regs[dst] = imm & mask
        elif code == 0xBF:
            regs[dst] = regs[src]
        elif code in (0x55, 0x5D, 0x15):
            other = regs[src] if code == 0x5D else imm & mask
            taken = regs[dst] == other if code == 0x15 else regs[dst] != other
            if taken:
                pc += off
        elif code == 0x95:
            assert regs[0] in (0, 1)
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
    raise AssertionError("program does not terminate")


def rule(allow: bool, kind: str, major: int = WILDCARD, minor: int = WILDCARD, access: str = "rwm") -> Rule:
    acc = sum({"r": ACC_READ, "w": ACC_WRITE, "m": ACC_MKNOD}[c] for c in access)
    return Rule(allow, kind, major, minor, acc)


# -- the emulation (v1 kernel semantics) --------------------------------------------------------------


def test_default_deny_with_allowed_devices() -> None:
    state = emulate([rule(True, "c", 1, 3), rule(True, "c", 136, access="rw"), rule(True, "b", access="m")])
    assert not state.default_allow
    assert state.allows("c", 1, 3, ACC_READ | ACC_WRITE)
    assert not state.allows("c", 1, 5, ACC_READ)
    assert state.allows("c", 136, 7, ACC_WRITE)
    assert not state.allows("c", 136, 7, ACC_MKNOD)  # rw only
    assert not state.allows("c", 136, 7, ACC_READ | ACC_MKNOD)  # every requested bit must be covered
    assert state.allows("b", 8, 0, ACC_MKNOD)
    assert not state.allows("b", 8, 0, ACC_READ)


def test_deny_removes_access_from_the_exact_exception() -> None:
    state = emulate([rule(True, "c", 1, 3, "rwm"), rule(False, "c", 1, 3, "w"), rule(False, "c", 1, 5)])
    assert [(r.kind, r.major, r.minor, r.access) for r in state.exceptions] == [
        ("c", 1, 3, ACC_READ | ACC_MKNOD)
    ]
    assert state.allows("c", 1, 3, ACC_READ)
    assert not state.allows("c", 1, 3, ACC_WRITE)


def test_allow_rules_merge_into_one_exception() -> None:
    state = emulate([rule(True, "c", 1, 3, "r"), rule(True, "c", 1, 3, "w")])
    assert len(state.exceptions) == 1
    assert state.allows("c", 1, 3, ACC_READ | ACC_WRITE)


def test_a_rules_reset_everything() -> None:
    state = emulate([rule(True, "c", 1, 3), rule(True, "a"), rule(False, "c", 1, 5, "w")])
    assert state.default_allow
    assert state.allows("c", 1, 3, ACC_ALL)
    assert not state.allows("c", 1, 5, ACC_READ | ACC_WRITE)  # any overlap with a deny exception
    assert state.allows("c", 1, 5, ACC_READ)
    assert state.allows("b", 1, 5, ACC_WRITE)  # the exception is for char devices only
    state = emulate([rule(True, "a"), rule(False, "a"), rule(True, "c", 1, 3)])
    assert not state.default_allow and len(state.exceptions) == 1


def test_parse_rules_defaults_and_wildcards() -> None:
    rules = parse_rules(
        [{"allow": False}, {"allow": True, "type": "c", "major": 10, "minor": -1, "access": ""}], "devices"
    )
    assert [r.v1_string() for r in rules] == ["a *:* rwm", "c 10:* rwm"]
    assert [r.allow for r in rules] == [False, True]
    with pytest.raises(InvalidArgument, match=r"devices\[0\]\.major"):
        parse_rules([{"allow": True, "major": "1"}], "devices")
    with pytest.raises(InvalidArgument, match="must be a list"):
        parse_rules({"allow": True}, "devices")


# -- the generated program ----------------------------------------------------------------------------


def test_deny_all_program_bytes() -> None:
    prog = devfilter.generate(Emulated(False, []))
    assert prog == bytes.fromhex(
        "6112000000000000"  # r2 = *(u32 *)(r1 + 0)
        "57020000ffff0000"  # r2 &= 0xffff
        "6113000000000000"  # r3 = *(u32 *)(r1 + 0)
        "7703000010000000"  # r3 >>= 16
        "6114040000000000"  # r4 = *(u32 *)(r1 + 4)
        "6115080000000000"  # r5 = *(u32 *)(r1 + 8)
        "b700000000000000"  # r0 = 0
        "9500000000000000"  # exit
    )
    assert run(prog, CHAR, 1, 3, ACC_READ) == 0


def test_single_device_program_layout() -> None:
    prog = devfilter.generate(emulate([rule(True, "c", 1, 3, "rw")]))
    insns = [prog[i : i + 8] for i in range(0, len(prog), 8)]
    block = insns[6:-2]
    # type check, access check (mov, and, jne), major, minor, then "return 1"
    assert [i[0] for i in block] == [0x55, 0xBF, 0x57, 0x5D, 0x55, 0x55, 0xB7, 0x95]
    # every conditional jump lands just after the block
    for index, ins in enumerate(block):
        if ins[0] in (0x55, 0x5D):
            assert index + 1 + struct.unpack("<h", ins[2:4])[0] == len(block)
    assert struct.unpack("<i", block[4][4:])[0] == 1 and struct.unpack("<i", block[5][4:])[0] == 3
    assert run(prog, CHAR, 1, 3, ACC_READ | ACC_WRITE) == 1
    assert run(prog, CHAR, 1, 3, ACC_MKNOD) == 0
    assert run(prog, BLOCK, 1, 3, ACC_READ) == 0
    assert run(prog, CHAR, 1, 4, ACC_READ) == 0
    assert run(prog, CHAR, 2, 3, ACC_READ) == 0


def test_docker_default_rules() -> None:
    spec = [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
        {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
        {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
        {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
        {"allow": True, "type": "c", "major": None, "minor": None, "access": "m"},
        {"allow": True, "type": "b", "major": None, "minor": None, "access": "m"},
        {"allow": True, "type": "c", "major": 136, "minor": None, "access": "rwm"},
        {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
    ]
    prog = devfilter.generate(emulate(parse_rules(spec, "devices")))
    assert run(prog, CHAR, 1, 3, ACC_READ | ACC_WRITE) == 1  # /dev/null
    assert run(prog, CHAR, 136, 4, ACC_READ | ACC_WRITE) == 1  # /dev/pts/4
    assert run(prog, CHAR, 10, 229, ACC_READ) == 0  # /dev/fuse
    assert run(prog, CHAR, 10, 229, ACC_MKNOD) == 1  # but mknod of any char device is fine
    assert run(prog, BLOCK, 8, 0, ACC_READ) == 0  # /dev/sda
    assert run(prog, BLOCK, 8, 0, ACC_MKNOD) == 1


def test_allow_by_default_program() -> None:
    prog = devfilter.generate(emulate([rule(True, "a"), rule(False, "b", 8, access="w")]))
    assert run(prog, BLOCK, 8, 0, ACC_WRITE) == 0
    assert run(prog, BLOCK, 8, 0, ACC_READ | ACC_WRITE) == 0
    assert run(prog, BLOCK, 8, 0, ACC_READ) == 1
    assert run(prog, CHAR, 8, 0, ACC_WRITE) == 1
    assert run(prog, BLOCK, 9, 0, ACC_WRITE) == 1


def _random_rules(rng: random.Random) -> list[Rule]:
    rules = []
    for _ in range(rng.randint(0, 8)):
        kind = rng.choice("abcc")
        rules.append(
            Rule(
                rng.random() < 0.6,
                kind,
                rng.choice([WILDCARD, 1, 5, 136]),
                rng.choice([WILDCARD, 0, 3, 5]),
                rng.randint(1, ACC_ALL),
            )
        )
    return rules


def test_program_agrees_with_the_emulation_on_random_rule_sets() -> None:
    rng = random.Random(20240607)
    for _ in range(300):
        rules = _random_rules(rng)
        start_allow = rng.random() < 0.2
        state = emulate(rules, default_allow=start_allow)
        prog = devfilter.generate(state)
        for kind in ("b", "c"):
            for major in (1, 5, 136, 4000):
                for minor in (0, 3, 5, 99999):
                    for access in range(1, ACC_ALL + 1):
                        want = state.allows(kind, major, minor, access)
                        got = run(prog, KIND[kind], major, minor, access)
                        assert got == int(want), (rules, start_allow, kind, major, minor, access)
