"""Converting v1-style OCI values to cgroup v2 files, with the formulas runc and crun use."""

from __future__ import annotations

import math

from ketch.common.errors import InvalidArgument

SHARES_MIN = 2
SHARES_MAX = 262144  # kernel MAX_SHARES (1 << 18)
WEIGHT_MAX = 10000


def shares_to_weight(shares: int) -> int:
    """cpu.shares [2, 262144] (default 1024) -> cpu.weight [1, 10000] (default 100).

    The quadratic-in-log2 curve current runc (opencontainers/cgroups) and crun (1.23+) use: it maps
    2 -> 1, 1024 -> 100 and 262144 -> 10000, so the v1 and v2 defaults agree. 0 means unset.
    """
    if shares == 0:
        return 0
    if shares <= SHARES_MIN:
        return 1
    if shares >= SHARES_MAX:
        return WEIGHT_MAX
    lg = math.log2(shares)
    exponent = (lg * lg + 125 * lg) / 612.0 - 7.0 / 34.0
    return math.ceil(math.pow(10, exponent))


def blkio_weight_to_io_weight(weight: int) -> int:
    """blkio.weight [10, 1000] -> io.weight [1, 10000]."""
    if weight == 0:
        return 0
    return 1 + (weight - 10) * 9999 // 990


def swap_to_v2(swap: int, memory: int) -> int | None:
    """OCI memory.swap is memory+swap; memory.swap.max is swap alone. 0 means unset, -1 unlimited.
    Returns the memory.swap.max value (-1 for "max"), or None when nothing should be written."""
    if memory == -1 and swap == 0:
        return -1  # unlimited memory and no swap setting: unlimited swap too, as on v1
    if swap == -1:
        return -1
    if swap == 0:
        return None
    if memory in (0, -1):
        raise InvalidArgument("linux.resources.memory.swap cannot be set without a memory limit")
    if memory < 0:
        raise InvalidArgument(f"invalid linux.resources.memory.limit {memory}")
    if swap < memory:
        raise InvalidArgument(
            f"linux.resources.memory.swap ({swap}) is memory+swap and must be >= memory.limit ({memory})"
        )
    return swap - memory


def limit_str(value: int) -> str:
    """v2 .max/.low/.high files take "max" for unlimited where v1 took -1."""
    return "max" if value == -1 else str(value)
