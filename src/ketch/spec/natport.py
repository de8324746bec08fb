"""The two splits of go-connections' ``nat`` port syntax that both the CLI and the daemon parse ``-p`` with.

Standard library only and import-free, so the CLI's start-up budget is untouched.
"""

from __future__ import annotations

__all__ = ["split_parts", "split_proto_port"]


def split_proto_port(raw: str) -> tuple[str, str]:
    """nat.SplitProtoPort: ``80/udp`` -> ("udp", "80"); no or an empty protocol is tcp; ("", "") for nothing."""
    parts = raw.split("/")
    if not raw or not parts[0]:
        return "", ""
    if len(parts) == 1 or not parts[1]:
        return "tcp", parts[0]
    return parts[1], parts[0]


def split_parts(raw: str) -> tuple[str, str, str]:
    """``[ip:][hostPort:]containerPort`` -> (ip, host port, container port); an IPv6 ip keeps its colons."""
    parts = raw.split(":")
    if len(parts) == 1:
        return "", "", parts[0]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    return ":".join(parts[:-2]), parts[-2], parts[-1]
