"""OCI platforms: parsing ``--platform`` values, normalising, and ranking candidates as containerd does.

Vocabulary (containerd/platforms): a *specifier* is what users type, ``<os>|<arch>|<os>/<arch>[/<variant>]``,
optionally ``<os>(<os.version>[+<feature>...])``. *Normalising* maps aliases to Go's names (x86_64 -> amd64,
aarch64 -> arm64, armhf -> arm/v7, armel -> arm/v6, i386 -> 386, macos -> darwin) and fills in the variants that
go without saying: arm means arm/v7, while arm64/v8 and amd64/v1 drop their variant. Two platforms are equal
when their normal forms are. A :class:`PlatformMatcher` (``platforms.Only``) accepts the wanted platform and the
ones it can run, best first: arm64/v8 then arm/v8, v7, v6, v5; arm/v7 then v6, v5; amd64/v3 then v2, v1, 386.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from ketch.common.errors import InvalidArgument

__all__ = [
    "Platform",
    "PlatformMatcher",
    "compatible_platforms",
    "host_platform",
    "normalize_arch",
    "normalize_os",
    "parse_platform",
]

_KNOWN_OS = frozenset({
    "aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js", "linux", "nacl", "netbsd",
    "openbsd", "plan9", "solaris", "windows", "zos",
})  # fmt: skip
_KNOWN_ARCH = frozenset({
    "386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "ppc64", "ppc64le", "loong64", "mips", "mipsle",
    "mips64", "mips64le", "mips64p32", "mips64p32le", "ppc", "riscv", "riscv64", "s390", "s390x", "sparc",
    "sparc64", "wasm",
})  # fmt: skip
_UNAME_ARCH = {"i486": "386", "i586": "386", "i686": "386", "loongarch64": "loong64"}
_COMPONENT_RE = re.compile(r"[A-Za-z0-9_.-]+")
_OS_RE = re.compile(r"([A-Za-z0-9_-]+)(?:\(([A-Za-z0-9_.%-]*)((?:\+[A-Za-z0-9_.%-]+)*)\))?")


@dataclass(frozen=True, slots=True)
class Platform:
    """An OCI platform as an image or index entry declares it (not normalised: see :meth:`normalized`)."""

    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()

    def __str__(self) -> str:
        """containerd's ``platforms.Format``: ``linux/arm64/v8``, ``linux/amd64``."""
        if not self.os:
            return "unknown"
        return "/".join(part for part in (self.os, self.architecture, self.variant) if part)

    def normalized(self) -> Platform:
        arch, variant = normalize_arch(self.architecture, self.variant)
        features = tuple(sorted(set(self.os_features)))
        return Platform(normalize_os(self.os), arch, variant, self.os_version, features)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant:
            out["variant"] = self.variant
        return out

    @classmethod
    def from_json(cls, obj: object, where: str = "platform") -> Platform:
        if not isinstance(obj, dict):
            raise InvalidArgument(f"{where}: expected an object, got {type(obj).__name__}")
        values: dict[str, str] = {}
        for key in ("os", "architecture", "variant", "os.version"):
            value = obj.get(key, "")
            if value is None:
                value = ""
            if not isinstance(value, str):
                raise InvalidArgument(f"{where}.{key}: expected a string, got {type(value).__name__}")
            values[key] = value
        for key in ("os", "architecture"):
            if not values[key]:
                raise InvalidArgument(f"{where}.{key} is missing")
        features = obj.get("os.features") or []
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise InvalidArgument(f"{where}.os.features: expected a list of strings")
        return cls(
            values["os"], values["architecture"], values["variant"], values["os.version"], tuple(features)
        )


def normalize_os(name: str) -> str:
    name = name.lower()
    return "darwin" if name == "macos" else name


def normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    """containerd's ``normalizeArch``: aliases to Go names, and the implied variants dropped or filled in."""
    arch, variant = arch.lower(), variant.lower()
    if arch == "i386":
        return "386", ""
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant == "v1" else variant
    if arch in ("aarch64", "arm64"):
        return "arm64", "" if variant in ("8", "v8") else variant
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if variant in ("", "7"):
            return "arm", "v7"
        if variant in ("5", "6", "8"):
            return "arm", "v" + variant
    return arch, variant


def host_platform() -> Platform:
    """The platform of this machine from ``uname``; arm64 reports v8 and 32-bit arm its ``armvN`` level."""
    uname = os.uname()
    machine = uname.machine.lower()
    # uname names a few machines differently from Go's GOARCH, which is what images declare.
    arch, variant = normalize_arch(_UNAME_ARCH.get(machine, machine), "")
    if arch == "arm64":
        variant = "v8"
    elif machine.startswith("armv") and machine[4:5].isdigit():
        arch, variant = "arm", "v" + machine[4]
    return Platform(normalize_os(uname.sysname), arch, variant)


def parse_platform(text: str, *, host: Platform | None = None) -> Platform:
    """containerd's ``platforms.Parse``; a lone OS or architecture takes the rest from ``host``."""
    if "*" in text:
        raise InvalidArgument(f"invalid platform {text!r}: wildcards are not supported")
    parts = text.split("/", 3)
    os_match = _OS_RE.fullmatch(parts[0])
    if os_match is None:
        raise InvalidArgument(f"invalid platform {text!r}: {parts[0]!r} is not a valid OS component")
    for part in parts[1:]:
        if not _COMPONENT_RE.fullmatch(part):
            raise InvalidArgument(f"invalid platform {text!r}: {part!r} is not a valid component")
    os_name = normalize_os(os_match.group(1))
    os_version = unquote(os_match.group(2) or "")
    features = tuple(unquote(f) for f in (os_match.group(3) or "").split("+")[1:])
    if len(parts) == 1:
        here = host or host_platform()
        if os_name in _KNOWN_OS:
            # containerd keeps the host's variant only where it is not implied (arm other than v7).
            variant = here.variant if here.architecture == "arm" and here.variant != "v7" else ""
            return Platform(os_name, here.architecture, variant, os_version, features)
        arch, variant = normalize_arch(parts[0], "")
        if arch in _KNOWN_ARCH:
            return Platform(here.os, arch, "" if (arch, variant) == ("arm", "v7") else variant)
        raise InvalidArgument(f"invalid platform {text!r}: unknown operating system or architecture")
    if len(parts) == 2:
        arch, variant = normalize_arch(parts[1], "")
        if (arch, variant) == ("arm", "v7"):
            variant = ""
        return Platform(os_name, arch, variant, os_version, features)
    if len(parts) == 3:
        arch, variant = normalize_arch(parts[1], parts[2])
        if arch == "arm64" and not variant:
            variant = "v8"
        return Platform(os_name, arch, variant, os_version, features)
    raise InvalidArgument(f"invalid platform {text!r}: too many components")


def _version(variant: str) -> int | None:
    digits = variant.removeprefix("v")
    return int(digits) if digits.isdigit() else None


def compatible_platforms(platform: Platform) -> list[Platform]:
    """The platforms ``platform`` can run, best first (containerd's ``platformVector``); normalise first."""

    def same(arch: str, variant: str) -> Platform:
        return Platform(platform.os, arch, variant, platform.os_version, platform.os_features)

    out = [platform]
    arch, variant = platform.architecture, platform.variant
    if arch == "amd64":
        level = _version(variant)
        if level is not None and level > 1:
            out += [same("amd64", f"v{n}") for n in range(level - 1, 0, -1)]
        out.append(same("386", ""))
    elif arch == "arm":
        level = _version(variant)
        if level is not None and level > 5:
            out += [same("arm", f"v{n}") for n in range(level - 1, 4, -1)]
    elif arch == "arm64":
        variant = variant or "v8"
        major_text, dot, minor_text = variant.partition(".")
        major = _version(major_text)
        if major is not None and major >= 8:
            minor = int(minor_text) if dot and len(variant) == 4 and minor_text.isdigit() else 0
            if major == 9:
                out += [same("arm64", f"v9.{m}" if m else "v9") for m in range(minor - 1, -1, -1)]
                # v9.x grew out of v8.(x+5), so it runs everything up to that.
                major, minor = 8, minor + 5
                out.append(same("arm64", f"v8.{minor}"))
            out += [same("arm64", f"v{major}.{m}" if m else f"v{major}") for m in range(minor - 1, -1, -1)]
        if variant.startswith(("v8.", "v9.")):
            variant = "v8"
        out += compatible_platforms(same("arm", variant))
    return out


def _features_subset(wanted: tuple[str, ...], offered: tuple[str, ...]) -> bool:
    return set(offered) <= set(wanted)


class PlatformMatcher:
    """``platforms.Only``: which declared platforms can run on ``platform``, and how good each one is."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self._vector = [p.normalized() for p in compatible_platforms(platform.normalized())]

    def rank(self, candidate: Platform) -> int | None:
        """0 for an exact match, higher for a less preferred compatible one, None when it cannot run here."""
        have = candidate.normalized()
        for index, want in enumerate(self._vector):
            if (want.os, want.architecture, want.variant) == (have.os, have.architecture, have.variant) and (
                _features_subset(want.os_features, have.os_features)
            ):
                return index
        return None

    def match(self, candidate: Platform) -> bool:
        return self.rank(candidate) is not None
