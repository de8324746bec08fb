"""What a container's init and an exec'd process share: the last steps before execve."""

from __future__ import annotations

import os

from ketch.common.errors import KetchError, SystemFailure
from ketch.runtime import credentials
from ketch.runtime.hooks import hook_list, run_hooks

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ketch.runtime.state import ContainerState

__all__ = [
    "close_inherited_fds",
    "describe",
    "exec_user_process",
    "preload",
    "prepare_credentials",
    "reset_signal_mask",
]


def preload(
    process: dict[str, Any],
    linux: dict[str, Any],
    config: dict[str, Any] | None = None,
    *,
    seccomp_cache: str = "",
) -> tuple[bytes, int] | None:
    """Run in the runtime before it forks: import every module the container's processes will need, and
    compile the seccomp filter. After unshare(CLONE_NEWUSER) the interpreter's own files may be out of
    reach (a mapped root cannot read root's 0700 directories), after pivot_root or setns into the
    container's mount namespace they are gone, and libseccomp cannot be loaded either.
    Returns the compiled filter."""
    namespaces = linux.get("namespaces", [])
    if process.get("terminal"):
        from ketch.runtime import terminal  # noqa: F401
    if any(ns.get("type") == "network" and "path" not in ns for ns in namespaces):
        import _socket  # noqa: F401
        import fcntl  # noqa: F401  (namespaces.loopback_up)
        import struct  # noqa: F401
    if config is not None:
        if hook_list(config, "createContainer") or hook_list(config, "startContainer"):
            import subprocess  # noqa: F401
        if any("tmpcopyup" in m.get("options", []) for m in config.get("mounts", [])):
            import shutil  # noqa: F401
            import tempfile  # noqa: F401
    if "seccomp" not in linux:
        return None
    from ketch.runtime import seccomp

    return seccomp.compile_program(linux["seccomp"], cache_dir=seccomp_cache)


def prepare_credentials(
    process: dict[str, Any],
    compiled: tuple[bytes, int] | None,
) -> tuple[str, dict[str, str]]:
    """Everything between pivot_root and the wait for ``start``; returns the resolved program and env."""
    credentials.apply_privileged_settings(process)
    if process.get("noNewPrivileges"):
        credentials.set_no_new_privileges()
    elif compiled is not None:
        # Without no_new_privs the filter must be loaded while CAP_SYS_ADMIN is still held.
        from ketch.runtime import seccomp

        seccomp.load_compiled(compiled)
    credentials.drop_bounding(process)
    credentials.apply_user(process)
    credentials.apply_capabilities(process)
    try:
        os.chdir(process.get("cwd", "/"))
    except OSError as exc:
        raise SystemFailure(
            f'chdir to cwd ("{process.get("cwd", "/")}") set in config.json failed: '
            f"{(exc.strerror or '').lower()}"
        ) from None
    env_list: list[str] = process.get("env", [])
    exe = credentials.lookup_executable(process["args"][0], env_list)
    env = dict(item.split("=", 1) for item in env_list)
    if "HOME" not in env:
        # As runc: the user's home from the container's /etc/passwd, else "/".
        env["HOME"] = credentials.home_directory(process.get("user", {}).get("uid", 0))
    return exe, env


def exec_user_process(
    process: dict[str, Any],
    compiled: tuple[bytes, int] | None,
    exe: str,
    env: dict[str, str],
    st: ContainerState | None,
) -> None:
    if st is not None:
        run_hooks("startContainer", hook_list(st.config, "startContainer"), st.oci_state("created"))
    if process.get("noNewPrivileges") and compiled is not None:
        from ketch.runtime import seccomp

        seccomp.load_compiled(compiled)
    os.execve(exe, process["args"], env)


def reset_signal_mask() -> None:
    """Unblock every signal: a foreground ``run`` or ``exec`` blocks them before forking (see commands.py),
    and the mask would otherwise survive execve into the container's process."""
    import _signal  # type: ignore[import-not-found]

    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])


def close_inherited_fds(first: int, keep: set[int]) -> None:
    """Mark every fd from ``first`` up, other than ours, close-on-exec: the container gets only its stdio
    and the preserved fds (``--preserve-fds``)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd >= first and fd not in keep:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass


def describe(exc: BaseException) -> str:
    if isinstance(exc, KetchError):
        return str(exc)
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return f"{type(exc).__name__}: {exc}"
