"""``--change`` lines for ``import`` (and later ``commit``): Dockerfile instructions applied to an image config.

Each line is one instruction, as moby's ``dockerfile.BuildFromConfig`` takes them: CMD, ENTRYPOINT, ENV, EXPOSE,
HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME and WORKDIR. Anything else is refused with Docker's
words (``from is not a valid change command``). The config is Docker's container.Config as a JSON object
(``{"Cmd": [...], "Env": [...], ...}``) and is changed in place.

Semantics follow the Dockerfile: exec form (a JSON array) or shell form (``/bin/sh -c``) for CMD, ENTRYPOINT
and HEALTHCHECK; an ENTRYPOINT clears a CMD not set by an earlier line; ENV, LABEL, EXPOSE, USER, WORKDIR,
VOLUME and STOPSIGNAL expand ``$VAR`` and ``${VAR}`` (with ``:-``, ``-``, ``:+``, ``+``, ``:?``, ``?``) from
the environment as it was before the line, and honour single quotes, double quotes and backslashes; a
relative WORKDIR is joined to the previous one.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable, Sequence
from typing import Any

from ketch.common.errors import InvalidArgument
from ketch.spec.signals import parse_signal

__all__ = ["apply_changes"]

_VALID = ("cmd", "entrypoint", "env", "expose", "healthcheck", "label", "onbuild", "stopsignal", "user",
          "volume", "workdir")  # fmt: skip
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PORT = re.compile(r"(\d+)(?:-(\d+))?(?:/([A-Za-z]+))?")
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_NANOS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


# ---- words -------------------------------------------------------------------------------------------------


def _split(text: str) -> list[str]:
    """Split on whitespace outside quotes and not escaped; quotes and backslashes stay for ``_expand``."""
    words, current, quote, i, started = [], [], "", 0, False
    while i < len(text):
        ch = text[i]
        if quote:
            current.append(ch)
            if ch == "\\" and quote == '"' and i + 1 < len(text):
                current.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in " \t":
            if started:
                words.append("".join(current))
                current, started = [], False
        else:
            started = True
            current.append(ch)
            if ch in "'\"":
                quote = ch
            elif ch == "\\" and i + 1 < len(text):
                current.append(text[i + 1])
                i += 1
        i += 1
    if quote:
        raise InvalidArgument(f"unexpected end of statement while looking for matching {quote}")
    if started:
        words.append("".join(current))
    return words


def _expand(word: str, env: dict[str, str]) -> str:
    """Remove quotes and backslashes and substitute variables, as BuildKit's shell lexer does."""
    out: list[str] = []
    i, quote = 0, ""
    while i < len(word):
        ch = word[i]
        if quote == "'":
            if ch == "'":
                quote = ""
            else:
                out.append(ch)
        elif ch == "\\" and i + 1 < len(word):
            following = word[i + 1]
            if quote == '"' and following not in '$"\\`':
                out.append(ch)
            out.append(following)
            i += 1
        elif ch == "$":
            value, i = _variable(word, i + 1, env)
            out.append(value)
            continue
        elif ch in "'\"" and (not quote or ch == quote):
            quote = "" if quote else ch
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _variable(word: str, i: int, env: dict[str, str]) -> tuple[str, int]:
    """Expand the variable after a ``$`` at ``i``; return (value, index after it)."""
    if i < len(word) and word[i] == "{":
        end = word.find("}", i)
        if end < 0:
            raise InvalidArgument(f"missing '}}' in {word!r}")
        body = word[i + 1 : end]
        m = _NAME.match(body)
        if m is None:
            raise InvalidArgument(f"bad substitution in {word!r}")
        name, rest = m.group(0), body[m.end() :]
        value = env.get(name)
        if not rest:
            return value or "", end + 1
        colon = rest.startswith(":")
        op, arg = (rest[1:2], rest[2:]) if colon else (rest[:1], rest[1:])
        unset = value is None or (colon and value == "")
        arg = _expand(arg, env)
        if op == "-":
            return (arg if unset else value or ""), end + 1
        if op == "+":
            return ("" if unset else arg), end + 1
        if op == "?":
            if unset:
                raise InvalidArgument(f"{name}: {arg or 'is not allowed to be unset'}")
            return value or "", end + 1
        raise InvalidArgument(f"unsupported modifier ({op}) in substitution {word!r}")
    m = _NAME.match(word, i)
    if m is None:
        return "$", i
    return env.get(m.group(0), ""), m.end()


def _json_list(rest: str) -> list[str] | None:
    """The exec form: a JSON array of strings, or None when ``rest`` is not one."""
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _pairs(instruction: str, rest: str, env: dict[str, str]) -> list[tuple[str, str]]:
    """``k=v k2="v 2"``, or the legacy ``k v v`` (one key, the rest as its value)."""
    words = _split(rest)
    if not words:
        raise InvalidArgument(f"{instruction} requires at least one argument")
    if "=" not in words[0]:
        if len(words) < 2:
            raise InvalidArgument(f"{instruction} must have two arguments")
        return [(words[0], _expand(rest.strip()[len(words[0]) :].strip(), env))]
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise InvalidArgument(
                f'Syntax error - can\'t find = in "{word}". Must be of the form: name=value'
            )
        key = _expand(key, env)
        if not key:
            raise InvalidArgument(f"{instruction} names can not be blank")
        pairs.append((key, _expand(value, env)))
    return pairs


# ---- instructions ------------------------------------------------------------------------------------------


class _State:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.cmd_set = False

    def env(self) -> dict[str, str]:
        out = {}
        for item in self.config.get("Env") or []:
            key, _, value = item.partition("=")
            out[key] = value
        return out


def _shell(rest: str) -> list[str]:
    exec_form = _json_list(rest)
    return exec_form if exec_form is not None else ["/bin/sh", "-c", rest]


def _cmd(state: _State, rest: str) -> None:
    state.config["Cmd"] = _shell(rest)
    state.cmd_set = True


def _entrypoint(state: _State, rest: str) -> None:
    state.config["Entrypoint"] = _shell(rest)
    if not state.cmd_set:
        state.config["Cmd"] = None


def _env(state: _State, rest: str) -> None:
    env = state.env()
    for key, value in _pairs("ENV", rest, env):
        items = [e for e in state.config.get("Env") or [] if e.partition("=")[0] != key]
        state.config["Env"] = [*items, f"{key}={value}"]


def _label(state: _State, rest: str) -> None:
    labels = dict(state.config.get("Labels") or {})
    labels.update(_pairs("LABEL", rest, state.env()))
    state.config["Labels"] = labels


def _expose(state: _State, rest: str) -> None:
    ports = dict(state.config.get("ExposedPorts") or {})
    env = state.env()
    for word in _split(rest):
        spec = _expand(word, env)
        m = _PORT.fullmatch(spec)
        if m is None:
            raise InvalidArgument(f"invalid containerPort: {spec.partition('/')[0]}")
        start = int(m.group(1))
        end = int(m.group(2)) if m.group(2) else start
        if end < start or end > 65535:
            raise InvalidArgument(f"invalid range specified for container port: {spec}")
        proto = (m.group(3) or "tcp").lower()
        for port in range(start, end + 1):
            ports[f"{port}/{proto}"] = {}
    state.config["ExposedPorts"] = ports


def _one(instruction: str, rest: str, env: dict[str, str]) -> str:
    words = _split(rest)
    if len(words) != 1:
        raise InvalidArgument(f"{instruction} requires exactly one argument")
    return _expand(words[0], env)


def _user(state: _State, rest: str) -> None:
    state.config["User"] = _one("USER", rest, state.env())


def _workdir(state: _State, rest: str) -> None:
    path = _one("WORKDIR", rest, state.env())
    if not posixpath.isabs(path):
        path = posixpath.join("/", state.config.get("WorkingDir") or "", path)
    state.config["WorkingDir"] = posixpath.normpath(path)


def _volume(state: _State, rest: str) -> None:
    paths = _json_list(rest)
    env = state.env()
    items = [_expand(w, env) for w in _split(rest)] if paths is None else paths
    if not items:
        raise InvalidArgument("VOLUME requires at least one argument")
    volumes = dict(state.config.get("Volumes") or {})
    for path in items:
        if not path.strip():
            raise InvalidArgument("VOLUME specified can not be an empty string")
        volumes[path] = {}
    state.config["Volumes"] = volumes


def _stopsignal(state: _State, rest: str) -> None:
    signal = _one("STOPSIGNAL", rest, state.env())
    try:
        parse_signal(signal)
    except ValueError:
        raise InvalidArgument(f"Invalid signal: {signal}") from None
    state.config["StopSignal"] = signal


def _onbuild(state: _State, rest: str) -> None:
    trigger = rest.strip()
    word = trigger.split(None, 1)[0].upper() if trigger else ""
    if word == "ONBUILD":
        raise InvalidArgument("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if word in ("FROM", "MAINTAINER"):
        raise InvalidArgument(f"{word} isn't allowed as an ONBUILD trigger")
    if not word:
        raise InvalidArgument("ONBUILD requires at least one argument")
    state.config["OnBuild"] = [*(state.config.get("OnBuild") or []), word + trigger[len(word) :]]


def _duration(flag: str, value: str) -> int:
    pos, total = 0, 0
    while pos < len(value):
        m = _DURATION.match(value, pos)
        if m is None:
            raise InvalidArgument(f"invalid duration {value!r} for {flag}")
        total += int(float(m.group(1)) * _NANOS[m.group(2)])
        pos = m.end()
    if not value:
        raise InvalidArgument(f"invalid duration {value!r} for {flag}")
    return total


def _healthcheck(state: _State, rest: str) -> None:
    words = rest.split()
    if [w.upper() for w in words] == ["NONE"]:
        state.config["Healthcheck"] = {"Test": ["NONE"]}
        return
    check: dict[str, Any] = {}
    text = rest.strip()
    keys = {"--interval": "Interval", "--timeout": "Timeout", "--start-period": "StartPeriod",
            "--start-interval": "StartInterval"}  # fmt: skip
    while text.startswith("--"):
        flag, _, text = text.partition(" ")
        text = text.lstrip()
        name, _, value = flag.partition("=")
        if name in keys:
            check[keys[name]] = _duration(name, value)
        elif name == "--retries":
            if not value.isdigit():
                raise InvalidArgument(f"invalid value {value!r} for --retries")
            check["Retries"] = int(value)
        else:
            raise InvalidArgument(f"unknown flag: {name}")
    word, _, command = text.partition(" ")
    if word.upper() != "CMD" or not command.strip():
        raise InvalidArgument("Unknown type in HEALTHCHECK (try CMD)")
    exec_form = _json_list(command.strip())
    check["Test"] = ["CMD", *exec_form] if exec_form is not None else ["CMD-SHELL", command.strip()]
    state.config["Healthcheck"] = {"Test": check.pop("Test"), **check}


_HANDLERS: dict[str, Callable[[_State, str], None]] = {
    "cmd": _cmd, "entrypoint": _entrypoint, "env": _env, "expose": _expose, "healthcheck": _healthcheck,
    "label": _label, "onbuild": _onbuild, "stopsignal": _stopsignal, "user": _user, "volume": _volume,
    "workdir": _workdir,
}  # fmt: skip


def apply_changes(config: dict[str, Any], changes: Sequence[str]) -> dict[str, Any]:
    """Apply ``changes`` to ``config`` (a container.Config JSON object) and return it.

    Every line is checked before any is applied, so a bad line leaves ``config`` as it was.
    """
    parsed: list[tuple[str, str]] = []
    for line in changes:
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        word, _, rest = text.partition(" ") if " " in text else text.partition("\t")
        instruction = word.lower()
        if instruction not in _VALID:
            raise InvalidArgument(f"{instruction} is not a valid change command")
        parsed.append((instruction, rest.strip()))
    trial = json.loads(json.dumps(config))
    state = _State(trial)
    for instruction, rest in parsed:
        _HANDLERS[instruction](state, rest)
    config.clear()
    config.update(trial)
    return config
