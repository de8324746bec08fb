"""Generate the BPF_PROG_TYPE_CGROUP_DEVICE program that enforces device rules on cgroup v2.

cgroup v2 has no devices.allow/deny; the kernel runs an eBPF program attached to the cgroup for every
device open/mknod with a struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; } where
access_type = (access << 16) | device type. Returning 1 allows, 0 denies.

The program is generated from the emulated v1 state (devices.emulate) so both cgroup versions enforce the
same rules: one block per exception, checked in order, then the default.
"""

from __future__ import annotations

from ketch.runtime.cgroups.devices import ACC_ALL, WILDCARD, Emulated

# Device types in bpf_cgroup_dev_ctx.access_type (include/uapi/linux/bpf.h).
DEV_BLOCK = 1
DEV_CHAR = 2
_KIND = {"b": DEV_BLOCK, "c": DEV_CHAR}

# Opcodes (class | operation | source).
_LDX_MEM_W = 0x61  # BPF_LDX | BPF_MEM | BPF_W
_ALU64_AND_K = 0x57
_ALU64_RSH_K = 0x77
_ALU64_MOV_K = 0xB7
_ALU64_MOV_X = 0xBF
_JNE_K = 0x55
_JNE_X = 0x5D
_JEQ_K = 0x15
_EXIT = 0x95

# Registers: R1 holds the context on entry; R2 type, R3 access, R4 major, R5 minor after the prologue.
R0, R1, R2, R3, R4, R5 = range(6)

INSN_SIZE = 8


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One struct bpf_insn: u8 code, u8 dst:4/src:4, s16 off, s32 imm, little-endian."""
    return (
        bytes((code, (src << 4) | dst))
        + (off & 0xFFFF).to_bytes(2, "little")
        + (imm & 0xFFFFFFFF).to_bytes(4, "little")
    )


def _prologue() -> list[bytes]:
    return [
        insn(_LDX_MEM_W, R2, R1, 0),  # r2 = ctx->access_type
        insn(_ALU64_AND_K, R2, imm=0xFFFF),  # r2 &= 0xffff   (device type)
        insn(_LDX_MEM_W, R3, R1, 0),  # r3 = ctx->access_type
        insn(_ALU64_RSH_K, R3, imm=16),  # r3 >>= 16       (access bits)
        insn(_LDX_MEM_W, R4, R1, 4),  # r4 = ctx->major
        insn(_LDX_MEM_W, R5, R1, 8),  # r5 = ctx->minor
    ]


def _ret(value: bool) -> list[bytes]:
    return [insn(_ALU64_MOV_K, R0, imm=1 if value else 0), insn(_EXIT)]


def generate(state: Emulated) -> bytes:
    """The program for an emulated rule set; each exception block jumps past itself when it does not
    match (the offset counts the instructions still left in the block)."""
    prog = _prologue()
    for ex in state.exceptions:
        checks: list[tuple[int, int, int, int]] = []  # (code, dst, src, imm) of conditional jumps
        pre: list[list[bytes]] = []  # instructions preceding each jump
        if ex.kind in _KIND:
            pre.append([])
            checks.append((_JNE_K, R2, 0, _KIND[ex.kind]))
        if ex.access != ACC_ALL or state.default_allow:
            # r1 = request & rule; deny-by-default needs request within rule, allow-by-default any overlap
            pre.append([insn(_ALU64_MOV_X, R1, R3), insn(_ALU64_AND_K, R1, imm=ex.access)])
            if state.default_allow:
                checks.append((_JEQ_K, R1, 0, 0))
            else:
                checks.append((_JNE_X, R1, R3, 0))
        if ex.major != WILDCARD:
            pre.append([])
            checks.append((_JNE_K, R4, 0, ex.major))
        if ex.minor != WILDCARD:
            pre.append([])
            checks.append((_JNE_K, R5, 0, ex.minor))
        tail = _ret(not state.default_allow)
        # Lay out the block, then fill each jump with the distance to the end of the block.
        block: list[bytes] = []
        jumps: list[tuple[int, tuple[int, int, int, int]]] = []
        for before, check in zip(pre, checks, strict=True):
            block.extend(before)
            jumps.append((len(block), check))
            block.append(b"")
        block.extend(tail)
        for index, (code, dst, src, imm) in jumps:
            block[index] = insn(code, dst, src, off=len(block) - index - 1, imm=imm)
        prog.extend(block)
    prog.extend(_ret(state.default_allow))
    return b"".join(prog)
