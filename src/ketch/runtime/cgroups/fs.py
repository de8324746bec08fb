"""Plain os-level access to cgroup interface files.

Every cgroup write is one write(2) on a freshly opened file: the kernel parses the value per write, so no
buffered text layer. Errors name the file and the value. The managers call these through the module
(fs.write(...)) so tests can observe the exact sequence of writes.
"""

from __future__ import annotations

import errno
import os
import time

from ketch.common.errors import SystemFailure


def write(dirpath: str, name: str, value: str) -> None:
    """Write value to dirpath/name; SystemFailure (with errno) if the kernel refuses it."""
    path = os.path.join(dirpath, name)
    data = value.encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    except OSError as exc:
        raise _failure(path, value, exc) from None
    try:
        n = os.write(fd, data)
    except OSError as exc:
        raise _failure(path, value, exc) from None
    finally:
        os.close(fd)
    if n != len(data):
        raise SystemFailure(f"short write of {value!r} to {path} ({n} of {len(data)} bytes)", path=path)


def _failure(path: str, value: str, exc: OSError) -> SystemFailure:
    return SystemFailure(
        f"cannot write {value!r} to {path}: {exc.strerror or exc}", errno=exc.errno or 0, path=path
    )


def read(dirpath: str, name: str) -> str:
    path = os.path.join(dirpath, name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise SystemFailure.from_oserror(f"cannot read {path}", exc) from None
    chunks: list[bytes] = []
    try:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError as exc:
        raise SystemFailure(f"cannot read {path}: {exc.strerror}", errno=exc.errno or 0, path=path) from None
    finally:
        os.close(fd)
    return b"".join(chunks).decode(errors="replace")


def read_opt(dirpath: str, name: str) -> str | None:
    """Like read, but None when the file does not exist (controller or feature absent)."""
    try:
        return read(dirpath, name)
    except SystemFailure as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise


def exists(dirpath: str, name: str) -> bool:
    return os.path.exists(os.path.join(dirpath, name))


def keyed(text: str | None) -> dict[str, int]:
    """Parse "key value" lines (memory.stat, cpu.stat, memory.events ...); unparsable lines are skipped."""
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def uint(text: str | None, *, max_value: int = 0) -> int:
    """A single-number file; "max" becomes max_value, missing or garbage becomes 0."""
    if text is None:
        return 0
    text = text.strip()
    if text == "max":
        return max_value
    try:
        return int(text)
    except ValueError:
        return 0


def procs(dirpath: str) -> list[int]:
    text = read_opt(dirpath, "cgroup.procs")
    return [int(p) for p in (text or "").split()]


def all_procs(dirpath: str) -> list[int]:
    """Processes of dirpath and every cgroup below it."""
    found: list[int] = []
    if not os.path.isdir(dirpath):
        return found
    for top, _dirs, _files in os.walk(dirpath):
        found.extend(procs(top))
    return sorted(set(found))


def add_proc(dirpath: str, pid: int) -> None:
    """Move pid into the cgroup. EINVAL can mean the task is still being forked (TASK_NEW): retry a little."""
    for attempt in range(5):
        try:
            write(dirpath, "cgroup.procs", str(pid))
            return
        except SystemFailure as exc:
            if exc.errno != errno.EINVAL or attempt == 4:
                raise
            time.sleep(0.03)


def make_dirs(dirpath: str) -> list[str]:
    """mkdir -p; returns the directories this call created, top first."""
    created: list[str] = []
    missing: list[str] = []
    cur = dirpath
    while not os.path.isdir(cur):
        missing.append(cur)
        parent = os.path.dirname(cur)
        if parent == cur:
            break
        cur = parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o755)
            created.append(d)
        except FileExistsError:
            if os.path.isdir(d):
                continue  # created concurrently
            raise SystemFailure(f"cannot create cgroup directory {d}: a file is in the way", path=d) from None
        except OSError as exc:
            raise SystemFailure.from_oserror(f"cannot create cgroup directory {d}", exc) from None
    return created


# rmdir of a cgroup fails with EBUSY while exiting processes are still accounted to it; they normally
# leave within milliseconds.
RMDIR_DELAYS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32)


def remove_tree(dirpath: str) -> None:
    """rmdir dirpath and every cgroup below it, children first; a missing directory is fine."""
    if not os.path.isdir(dirpath):
        return
    for top, dirs, _files in os.walk(dirpath, topdown=False):
        for d in dirs:
            _rmdir(os.path.join(top, d))
    _rmdir(dirpath)


def _rmdir(path: str) -> None:
    for delay in (*RMDIR_DELAYS, None):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or delay is None:
                raise SystemFailure.from_oserror(f"cannot remove cgroup {path}", exc) from None
            time.sleep(delay)
