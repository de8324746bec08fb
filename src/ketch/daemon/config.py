"""ketchd's configuration: a ``daemon.json``-style file, then command-line flags that override it.

Keys (as dockerd names them): ``data-root``, ``exec-root``, ``hosts``, ``pidfile``, ``log-level``,
``insecure-registries``, ``tlscacert``, ``tlscert``, ``tlskey`` (``tls`` and ``tlsverify`` are accepted as
booleans: a TCP host is refused unless all three TLS files are given, so verification is always on).
The default file is /etc/ketch/daemon.json, read only if it exists; a file named by ``--config-file`` must exist.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ketch.api.server import DEFAULT_HOST, TLSFiles, parse_host
from ketch.common.errors import InvalidArgument, SystemFailure

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "DEFAULT_DATA_ROOT",
    "DEFAULT_EXEC_ROOT",
    "LOG_LEVELS",
    "DaemonConfig",
    "load_config",
    "parse_args",
]

DEFAULT_CONFIG_FILE = "/etc/ketch/daemon.json"
DEFAULT_DATA_ROOT = "/var/lib/ketch"
DEFAULT_EXEC_ROOT = "/run/ketch"
LOG_LEVELS = {"debug": "DEBUG", "info": "INFO", "warn": "WARNING", "warning": "WARNING", "error": "ERROR",
              "fatal": "CRITICAL"}  # fmt: skip

_STRINGS = (
    "data-root",
    "exec-root",
    "pidfile",
    "log-level",
    "tlscacert",
    "tlscert",
    "tlskey",
    "default-runtime",
    "log-driver",
    "init-path",
)
_OBJECTS = ("runtimes",)
_LISTS = ("hosts", "insecure-registries")
_BOOLS = ("tls", "tlsverify")


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonConfig:
    data_root: str = DEFAULT_DATA_ROOT
    exec_root: str = DEFAULT_EXEC_ROOT
    hosts: tuple[str, ...] = (DEFAULT_HOST,)
    pidfile: str = os.path.join(DEFAULT_EXEC_ROOT, "ketchd.pid")
    log_level: str = "info"
    insecure_registries: tuple[str, ...] = ()
    tls: TLSFiles | None = None
    config_file: str | None = None
    runtimes: tuple[tuple[str, str], ...] = (
        ("ketch-runtime", "ketch-runtime"),
        ("runc", "runc"),
        ("crun", "crun"),
    )
    default_runtime: str = "ketch-runtime"
    log_driver: str = "json-file"
    init_path: str = ""

    @property
    def logging_level(self) -> str:
        """The stdlib logging level name for ``log_level``."""
        return LOG_LEVELS[self.log_level]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ketchd", description="The ketch daemon: serves the Docker Engine API."
    )
    parser.add_argument(
        "--config-file", help=f"daemon.json-style configuration (default {DEFAULT_CONFIG_FILE})"
    )
    parser.add_argument("--data-root", help=f"persistent state (default {DEFAULT_DATA_ROOT})")
    parser.add_argument("--exec-root", help=f"runtime state (default {DEFAULT_EXEC_ROOT})")
    parser.add_argument("--pidfile", help="where to write the daemon's pid (default EXEC_ROOT/ketchd.pid)")
    parser.add_argument(
        "-H",
        "--host",
        action="append",
        dest="hosts",
        help=f"where to listen; repeatable (default {DEFAULT_HOST})",
    )
    parser.add_argument("-l", "--log-level", help="debug, info, warn, error or fatal (default info)")
    parser.add_argument(
        "--insecure-registry", action="append", dest="insecure_registries", help="registry to reach over HTTP"
    )
    parser.add_argument(
        "--add-runtime", action="append", dest="add_runtime", help="NAME=PATH of an OCI runtime"
    )
    parser.add_argument("--default-runtime", help="the OCI runtime containers use (default ketch-runtime)")
    parser.add_argument("--log-driver", help="default log driver: json-file or none")
    parser.add_argument("--init-path", help="the docker-init (tini) binary for --init")
    parser.add_argument("--tlscacert", help="CA that signs the client certificates to accept")
    parser.add_argument("--tlscert", help="the server's certificate")
    parser.add_argument("--tlskey", help="the server's private key")
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    return _parser().parse_args(argv)


def read_config_file(path: str, *, required: bool) -> dict[str, Any]:
    """The file's keys, checked for type; {} when it is absent and not ``required``."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        if required:
            raise InvalidArgument(f"config file {path} does not exist") from None
        return {}
    except OSError as exc:
        raise SystemFailure.from_oserror(f"read config file {path}", exc) from exc
    if not data.strip():
        return {}
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"config file {path}: malformed JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidArgument(f"config file {path}: expected a JSON object at the top level")
    for key, value in obj.items():
        if key in _STRINGS:
            ok = isinstance(value, str)
        elif key in _LISTS:
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        elif key in _BOOLS:
            ok = isinstance(value, bool)
        elif key in _OBJECTS:
            ok = isinstance(value, dict)
        else:
            raise InvalidArgument(f"config file {path}: unknown key {key!r}")
        if not ok:
            kind = (
                "a string"
                if key in _STRINGS
                else "a list of strings"
                if key in _LISTS
                else "an object"
                if key in _OBJECTS
                else "true or false"
            )
            raise InvalidArgument(f"config file {path}: {key!r} must be {kind}, not {value!r}")
    return obj


def _absolute(what: str, path: str) -> str:
    if not path or not os.path.isabs(path):
        raise InvalidArgument(f"{what} must be an absolute path, not {path!r}")
    return os.path.normpath(path)


def load_config(argv: Sequence[str] | None = None) -> DaemonConfig:
    """Flags over the file over the defaults; InvalidArgument naming the bad setting."""
    args = parse_args(argv)
    path = args.config_file or DEFAULT_CONFIG_FILE
    file = read_config_file(path, required=args.config_file is not None)

    def pick(flag: Any, key: str, default: Any) -> Any:
        return flag if flag is not None else file.get(key, default)

    data_root = _absolute("data-root", pick(args.data_root, "data-root", DEFAULT_DATA_ROOT))
    exec_root = _absolute("exec-root", pick(args.exec_root, "exec-root", DEFAULT_EXEC_ROOT))
    pidfile = _absolute("pidfile", pick(args.pidfile, "pidfile", os.path.join(exec_root, "ketchd.pid")))
    log_level = str(pick(args.log_level, "log-level", "info")).lower()
    if log_level not in LOG_LEVELS:
        raise InvalidArgument(f"log-level {log_level!r} is not one of debug, info, warn, error, fatal")
    hosts = tuple(pick(args.hosts, "hosts", None) or [DEFAULT_HOST])
    parsed = [parse_host(h) for h in hosts]  # InvalidArgument names the bad host
    tls_files = [pick(getattr(args, k), k, None) for k in ("tlscacert", "tlscert", "tlskey")]
    tls = None
    if any(tls_files):
        if not all(tls_files):
            raise InvalidArgument("TLS needs all of tlscacert, tlscert and tlskey")
        tls = TLSFiles(ca=tls_files[0], cert=tls_files[1], key=tls_files[2])
    if tls is None and any(h.scheme == "tcp" for h in parsed):
        raise InvalidArgument(
            "a tcp:// host needs TLS with client certificates: give tlscacert, tlscert and tlskey"
        )
    registries = tuple(pick(args.insecure_registries, "insecure-registries", []))
    runtimes = dict(DaemonConfig().runtimes)
    for name, spec in (file.get("runtimes") or {}).items():
        runtimes[name] = spec.get("path", name) if isinstance(spec, dict) else str(spec)
    for entry in args.add_runtime or []:
        name, sep, path = entry.partition("=")
        if not sep or not name or not path:
            raise InvalidArgument(f"--add-runtime wants NAME=PATH, not {entry!r}")
        runtimes[name] = path
    default_runtime = str(pick(args.default_runtime, "default-runtime", "ketch-runtime"))
    if default_runtime not in runtimes:
        raise InvalidArgument(f"default-runtime {default_runtime!r} is not a configured runtime")
    log_driver = str(pick(args.log_driver, "log-driver", "json-file"))
    if log_driver not in ("json-file", "none"):
        raise InvalidArgument(f"log-driver {log_driver!r} is not one of json-file, none")
    init_path = str(pick(args.init_path, "init-path", "") or _find_init())
    runtimes = {name: _find_runtime(path) for name, path in runtimes.items()}
    return DaemonConfig(
        runtimes=tuple(runtimes.items()), default_runtime=default_runtime, log_driver=log_driver,
        init_path=init_path,
        data_root=data_root, exec_root=exec_root, hosts=hosts, pidfile=pidfile, log_level=log_level,
        insecure_registries=registries, tls=tls, config_file=path if file or args.config_file else None,
    )  # fmt: skip


def _find_init() -> str:
    """docker-init (Debian's docker.io ships tini under that name), else a tini on the host."""
    import shutil

    for name in ("docker-init", "tini-static", "tini"):
        found = shutil.which(name)
        if found:
            return found
    return ""


def _find_runtime(path: str) -> str:
    """A bare name is looked up on PATH, then beside this interpreter (a venv's bin holds ketch-runtime)."""
    import shutil
    import sys

    if os.sep in path:
        return path
    beside = os.path.join(os.path.dirname(sys.executable), path)
    return shutil.which(path) or (beside if os.access(beside, os.X_OK) else path)
