"""Signal names and numbers on Linux (x86_64 and aarch64 share them), as `kill` accepts them."""

from __future__ import annotations

__all__ = ["SIGNALS", "parse_signal", "signal_name"]

SIGNALS: dict[str, int] = {
    "SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGILL": 4, "SIGTRAP": 5, "SIGABRT": 6, "SIGIOT": 6,
    "SIGBUS": 7, "SIGFPE": 8, "SIGKILL": 9, "SIGUSR1": 10, "SIGSEGV": 11, "SIGUSR2": 12, "SIGPIPE": 13,
    "SIGALRM": 14, "SIGTERM": 15, "SIGSTKFLT": 16, "SIGCHLD": 17, "SIGCLD": 17, "SIGCONT": 18, "SIGSTOP": 19,
    "SIGTSTP": 20, "SIGTTIN": 21, "SIGTTOU": 22, "SIGURG": 23, "SIGXCPU": 24, "SIGXFSZ": 25, "SIGVTALRM": 26,
    "SIGPROF": 27, "SIGWINCH": 28, "SIGIO": 29, "SIGPOLL": 29, "SIGPWR": 30, "SIGSYS": 31, "SIGUNUSED": 31,
}  # fmt: skip
_RTMIN, _RTMAX = 34, 64
_BY_NUMBER = {number: name for name, number in reversed(SIGNALS.items())}


def parse_signal(text: str) -> int:
    """``KILL``, ``SIGKILL``, ``kill``, ``9``, ``SIGRTMIN+3`` and ``RTMAX-1`` to a number; ValueError otherwise."""
    raw = text.strip()
    if raw.isdigit():
        number = int(raw)
        if 0 < number <= _RTMAX:
            return number
        raise ValueError(f"invalid signal: {text}")
    name = raw.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name in SIGNALS:
        return SIGNALS[name]
    for base, value, sign in (("SIGRTMIN", _RTMIN, 1), ("SIGRTMAX", _RTMAX, -1)):
        if name == base:
            return value
        for op in ("+", "-"):
            prefix = base + op
            if name.startswith(prefix) and name[len(prefix) :].isdigit():
                offset = int(name[len(prefix) :]) * (1 if op == "+" else -1)
                if offset * sign >= 0 and _RTMIN <= value + offset <= _RTMAX:
                    return value + offset
    raise ValueError(f"unknown signal {text!r}")


def signal_name(number: int) -> str:
    if number in _BY_NUMBER:
        return _BY_NUMBER[number]
    if _RTMIN <= number <= _RTMAX:
        return "SIGRTMIN" if number == _RTMIN else f"SIGRTMIN+{number - _RTMIN}"
    return f"SIG{number}"
