"""Device cgroup rules: parsing OCI linux.resources.devices, the v1 devices.allow/deny strings, and an
emulation of the v1 kernel semantics that the v2 eBPF filter is generated from.

v1 semantics (security/device_cgroup.c): a cgroup has a default behaviour (allow or deny everything) and a
list of exceptions. An "a" rule resets the default and clears the list. A rule that agrees with the default
removes access bits from the exception with the same type/major/minor; a rule that disagrees adds (or
widens) an exception. In a deny-by-default cgroup a request is allowed when an exception covers all the
requested access bits; in an allow-by-default cgroup it is denied when an exception shares any bit.
"""

from __future__ import annotations

from ketch.common.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

WILDCARD = -1
ACC_MKNOD = 1
ACC_READ = 2
ACC_WRITE = 4
ACC_ALL = ACC_MKNOD | ACC_READ | ACC_WRITE
_ACCESS_BITS = {"m": ACC_MKNOD, "r": ACC_READ, "w": ACC_WRITE}


class Rule:
    """One device rule. kind is "a", "b" or "c"; major/minor WILDCARD for "*"; access is a bit mask."""

    __slots__ = ("access", "allow", "kind", "major", "minor")

    def __init__(self, allow: bool, kind: str, major: int, minor: int, access: int) -> None:
        self.allow = allow
        self.kind = kind
        self.major = major
        self.minor = minor
        self.access = access

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rule) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    def key(self) -> tuple[bool, str, int, int, int]:
        return (self.allow, self.kind, self.major, self.minor, self.access)

    def __repr__(self) -> str:
        return f"Rule({'allow' if self.allow else 'deny'} {self.v1_string()})"

    def v1_string(self) -> str:
        """The text written to devices.allow / devices.deny, e.g. "c 1:3 rwm"."""
        major = "*" if self.major == WILDCARD else str(self.major)
        minor = "*" if self.minor == WILDCARD else str(self.minor)
        return f"{self.kind} {major}:{minor} {access_string(self.access)}"


def access_string(access: int) -> str:
    return "".join(ch for ch, bit in (("r", ACC_READ), ("w", ACC_WRITE), ("m", ACC_MKNOD)) if access & bit)


def parse_access(text: str, where: str) -> int:
    access = 0
    for ch in text:
        bit = _ACCESS_BITS.get(ch)
        if bit is None:
            raise InvalidArgument(f"{where}.access {text!r} may only contain r, w and m")
        access |= bit
    return access or ACC_ALL  # an empty access string means every access, as in the v1 kernel


def _number(entry: dict[str, Any], key: str, where: str) -> int:
    value = entry.get(key)
    if value is None:
        return WILDCARD
    if not isinstance(value, int) or isinstance(value, bool) or value < -1:
        raise InvalidArgument(f"{where}.{key} must be a device number or -1, not {value!r}")
    return value


def parse_rules(value: object, where: str) -> list[Rule]:
    if not isinstance(value, list):
        raise InvalidArgument(f"{where} must be a list of device rules")
    rules: list[Rule] = []
    for i, entry in enumerate(value):
        w = f"{where}[{i}]"
        if not isinstance(entry, dict):
            raise InvalidArgument(f"{w} must be an object")
        allow = entry.get("allow")
        if not isinstance(allow, bool):
            raise InvalidArgument(f"{w}.allow must be true or false, not {allow!r}")
        kind = entry.get("type") or "a"
        if kind not in ("a", "b", "c"):
            raise InvalidArgument(f'{w}.type must be "a", "b" or "c", not {kind!r}')
        access = entry.get("access") or ""
        if not isinstance(access, str):
            raise InvalidArgument(f"{w}.access must be a string, not {access!r}")
        rules.append(
            Rule(allow, kind, _number(entry, "major", w), _number(entry, "minor", w), parse_access(access, w))
        )
    return rules


class Emulated:
    """The effective state after applying rules in order: a default and the exceptions to it."""

    __slots__ = ("default_allow", "exceptions")

    def __init__(self, default_allow: bool, exceptions: list[Rule]) -> None:
        self.default_allow = default_allow
        self.exceptions = exceptions

    def allows(self, kind: str, major: int, minor: int, access: int) -> bool:
        """Would the v1 kernel let a request of kind "b"/"c" with these access bits through?"""
        for ex in self.exceptions:
            if ex.kind != "a" and ex.kind != kind:
                continue
            if ex.major != WILDCARD and ex.major != major:
                continue
            if ex.minor != WILDCARD and ex.minor != minor:
                continue
            if self.default_allow:
                if access & ex.access:
                    return False
            elif access & ~ex.access == 0:
                return True
        return self.default_allow


def emulate(rules: list[Rule], *, default_allow: bool = False) -> Emulated:
    """Apply rules in order to a cgroup that starts with default_allow and no exceptions. The runtime
    writes "a" to devices.deny first, so the natural start is deny-all."""
    state = Emulated(default_allow, [])
    for rule in rules:
        if rule.kind == "a":
            state = Emulated(rule.allow, [])
            continue
        same = [
            i
            for i, ex in enumerate(state.exceptions)
            if (ex.kind, ex.major, ex.minor) == (rule.kind, rule.major, rule.minor)
        ]
        if rule.allow == state.default_allow:
            for i in same:
                ex = state.exceptions[i]
                state.exceptions[i] = Rule(ex.allow, ex.kind, ex.major, ex.minor, ex.access & ~rule.access)
            state.exceptions = [ex for ex in state.exceptions if ex.access]
        elif same:
            ex = state.exceptions[same[0]]
            state.exceptions[same[0]] = Rule(ex.allow, ex.kind, ex.major, ex.minor, ex.access | rule.access)
        else:
            state.exceptions.append(Rule(rule.allow, rule.kind, rule.major, rule.minor, rule.access))
    return state
