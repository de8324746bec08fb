"""``docker commit`` and ``docker export`` of a container (moby daemon/commit.go, daemon/export.go).

Commit: the image config is the container's Config, the ``--change`` lines applied to it. A Config sent with
the request (one that sets any field) replaces it instead; the changes are applied to that one, then what it
leaves empty is filled from the container's Config the way moby's ``merge`` does (User, ExposedPorts, Env,
Labels, Cmd/Entrypoint, Healthcheck, WorkingDir, Volumes, StopSignal). The history entry's ``created_by`` and
``container_config`` then come from that merged Config, where moby takes the container's. A running container
is paused while its changes are read, and resumed after; like moby, a pause that fails does not stop the
commit. Dead containers and containers being removed are refused with moby's words. The container gets a
``commit`` event naming the new image.

Export: the container's whole merged filesystem as a tar (image/flatten.py's format), nothing left out, as
moby tars the rootfs. A running container's rootfs is read where it is mounted, through a file descriptor, so
a stop that unmounts it meanwhile cannot cut the walk short. Otherwise the snapshot is mounted as a read-only
overlay whose topmost lower is the container's upper directory, at a private temporary directory that is
detached again at once; only the descriptor holds the mount while the tar is written, so nothing stays
mounted if ketchd dies half-way. Snapshots that are plain directories (the naive driver) are read directly.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

from ketch.common.errors import Conflict, KetchError, SystemFailure
from ketch.engine.model import ContainerConfig, Status
from ketch.engine.rootfs import mount_rootfs, unmount_rootfs
from ketch.image.changes import apply_changes
from ketch.image.flatten import write_merged
from ketch.image.snapshots.base import Mount
from ketch.spec import reference

if TYPE_CHECKING:
    from ketch.engine.containers import ContainerService
    from ketch.engine.db import Container

__all__ = ["commit_container", "export_container", "merge_config"]

log = logging.getLogger("ketch.engine")


def _refuse(container: Container, verb: str) -> None:
    cid, status = container.record.id, container.state.status
    if status is Status.DEAD:
        raise Conflict(f"You cannot {verb} container {cid} which is Dead")
    if status is Status.REMOVING:
        raise Conflict(f"You cannot {verb} container {cid} which is being removed")


# ---- commit ------------------------------------------------------------------------------------------------


def _env_key(entry: str) -> str:
    return entry.partition("=")[0]


def merge_config(user: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """moby's commit ``merge``: fill what ``user`` (a container.Config object) leaves empty from ``base``."""
    out = dict(user)
    if not out.get("User"):
        out["User"] = base.get("User", "")
    if not out.get("ExposedPorts"):
        out["ExposedPorts"] = base.get("ExposedPorts")
    else:
        out["ExposedPorts"] = {**(base.get("ExposedPorts") or {}), **out["ExposedPorts"]}
    if not out.get("Env"):
        out["Env"] = base.get("Env")
    else:
        keys = {_env_key(entry) for entry in out["Env"]}
        out["Env"] = [*out["Env"], *(e for e in base.get("Env") or () if _env_key(e) not in keys)]
    out["Labels"] = {**(base.get("Labels") or {}), **(out.get("Labels") or {})}
    if not out.get("Entrypoint"):
        if not out.get("Cmd"):
            out["Cmd"] = base.get("Cmd")
            out["ArgsEscaped"] = base.get("ArgsEscaped", False)
        if out.get("Entrypoint") is None:
            out["Entrypoint"] = base.get("Entrypoint")
    if base.get("Healthcheck"):
        out["Healthcheck"] = {
            **base["Healthcheck"],
            **{k: v for k, v in (out.get("Healthcheck") or {}).items() if v},
        }
    if not out.get("WorkingDir"):
        out["WorkingDir"] = base.get("WorkingDir", "")
    if not out.get("Volumes"):
        out["Volumes"] = base.get("Volumes")
    else:
        out["Volumes"] = {**out["Volumes"], **(base.get("Volumes") or {})}
    if not out.get("StopSignal"):
        out["StopSignal"] = base.get("StopSignal", "")
    return out


def _pause(service: ContainerService, container_id: str) -> bool:
    """Pause for the commit; True if it was paused here (and must be resumed)."""
    try:
        service.pause(container_id)
    except KetchError as exc:  # moby goes on with the commit when the pause fails
        log.warning("pause of %s for commit failed: %s", container_id[:12], exc)
        return False
    return True


def commit_container(
    service: ContainerService,
    ref: str,
    *,
    repo_tag: str | None = None,
    comment: str = "",
    author: str = "",
    changes: Sequence[str] = (),
    pause: bool = True,
    config_override: dict[str, Any] | None = None,
) -> str:
    """``docker commit``: a new image of the container's image plus its changes; return the image ID."""
    container = service.get(ref)
    _refuse(container, "commit")
    record = container.record
    config = record.config.to_api()
    override = None if config_override is None else ContainerConfig.from_api(config_override, "Config")
    # Go leaves the wrapper's embedded Config nil when the body sets none of its fields ("{}", which docker-py
    # sends): then the container's Config is used, as when there is no body at all.
    if override is not None and override != ContainerConfig():
        config, changes = merge_config(apply_changes(override.to_api(), changes), config), ()
    target = reference.parse(repo_tag) if repo_tag else None  # before pausing: a bad name costs nothing
    paused = pause and container.state.status is Status.RUNNING and _pause(service, record.id)
    try:
        image_id = service.images.commit(
            parent_image_id=record.image_id, snapshot_key=record.id, container_config=config,
            ref=str(target) if target else None, comment=comment, author=author, changes=changes,
            container_id=record.id,
        )  # fmt: skip
    finally:
        if paused:
            try:
                service.unpause(record.id)
            except KetchError as exc:
                log.warning("unpause of %s after commit failed: %s", record.id[:12], exc)
    service.publish(record, "commit", comment=comment, imageID=image_id,
                    imageRef=target.familiar() if target else "")  # fmt: skip
    return image_id


# ---- export ------------------------------------------------------------------------------------------------


def _read_only_view(mounts: Sequence[Mount]) -> Mount | str:
    """A read-only mount of what ``mounts`` (an active snapshot's) show, or the directory itself for a bind."""
    if len(mounts) != 1:
        raise SystemFailure(f"cannot export a root filesystem made of {len(mounts)} mounts")
    mount = mounts[0]
    if mount.type == "bind":
        return mount.source
    if mount.type != "overlay":
        raise SystemFailure(f"cannot export a root filesystem on a {mount.type} mount")
    upper, lower, kept = "", "", []
    for option in mount.options:
        key, _, value = option.partition("=")
        if key == "upperdir":
            upper = value
        elif key == "lowerdir":
            lower = value
        elif key != "workdir":
            kept.append(option)
    layers = ":".join(d for d in (upper, lower) if d)
    return Mount(type="overlay", source=mount.source, options=(*kept, f"lowerdir={layers}"))


def _open_dir(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise SystemFailure.from_oserror(f"open {path}", exc) from None


def _mounted_rootfs(path: str) -> int | None:
    """A descriptor of the container's mounted rootfs, or None when nothing is mounted there."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SystemFailure.from_oserror(f"open {path}", exc) from None
    # A mounted overlay has a device of its own; the bare mount point shares its parent's.
    if os.fstat(fd).st_dev != os.stat(os.path.dirname(path)).st_dev:
        return fd
    os.close(fd)
    return None


@contextlib.contextmanager
def _detached_view(view: Mount, scratch_root: str) -> Iterator[int]:
    """Mount ``view`` privately, keep a descriptor of it, detach it at once; yield the descriptor."""
    os.makedirs(scratch_root, mode=0o700, exist_ok=True)
    target = tempfile.mkdtemp(prefix="export-", dir=scratch_root)
    fd = -1
    try:
        mount_rootfs([view], target)
        fd = _open_dir(target)
    finally:
        try:
            unmount_rootfs(target)
        finally:
            with contextlib.suppress(OSError):
                os.rmdir(target)  # never rmtree: it would walk a mount that failed to go
    try:
        yield fd
    finally:
        os.close(fd)


def export_container(service: ContainerService, ref: str, out: BinaryIO) -> None:
    """``docker export``: the container's merged root filesystem as an uncompressed tar written to ``out``."""
    container = service.get(ref)
    _refuse(container, "export")
    cid = container.record.id
    try:
        fd = _mounted_rootfs(service.paths(cid).rootfs)
        if fd is not None:
            try:
                write_merged([f"/proc/self/fd/{fd}"], out)
            finally:
                os.close(fd)
        else:
            view = _read_only_view(service.images.snapshotter.mounts(cid))
            if isinstance(view, str):
                write_merged([view], out)
            else:
                with _detached_view(view, os.path.join(service.settings.exec_root, "export")) as fd:
                    write_merged([f"/proc/self/fd/{fd}"], out)
    except KetchError as exc:  # moby's wording; the walk has no other category to report
        raise SystemFailure(f"Error exporting container {ref}: {exc}") from None
    service.publish(container.record, "export")
