"""Linux capability names and numbers (linux/capability.h), as OCI config.json spells them."""

from __future__ import annotations

__all__ = ["CAPABILITIES", "cap_mask", "cap_number"]

# Index is the capability number.
_NAMES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE",
)  # fmt: skip

CAPABILITIES: dict[str, int] = {f"CAP_{name}": number for number, name in enumerate(_NAMES)}


def cap_number(name: str) -> int:
    """Number of ``CAP_X`` (the prefix and case are optional, as docker's --cap-add accepts ``net_admin``)."""
    key = name.upper()
    if not key.startswith("CAP_"):
        key = "CAP_" + key
    try:
        return CAPABILITIES[key]
    except KeyError:
        raise ValueError(f"unknown capability {name!r}") from None


def cap_mask(names: list[str] | tuple[str, ...], *, last_cap: int = len(_NAMES) - 1) -> int:
    """Bit mask of ``names``; capabilities the running kernel does not know (above ``last_cap``) are left out,
    as runc does, so a config written for a newer kernel still runs."""
    mask = 0
    for name in names:
        number = cap_number(name)
        if number <= last_cap:
            mask |= 1 << number
    return mask
