"""cgroupsPath rules (as runc's cgroupfs driver applies them) and where a path lands in each hierarchy."""

from __future__ import annotations

import posixpath

from ketch.common.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ketch.runtime.cgroups.layout import Mount


def inner_path(cgroups_path: str | None, container_id: str) -> str:
    """The cleaned cgroupsPath: absolute ("/a/b") or relative ("a/b", to the runtime's own cgroup).
    Unset means "/<container_id>". ".." can never climb above the hierarchy root (or, for a relative
    path, above the runtime's own cgroup)."""
    if not cgroups_path:
        if not container_id or "/" in container_id or container_id in (".", ".."):
            raise InvalidArgument(f"container id {container_id!r} cannot be used as a cgroup name")
        return "/" + container_id
    if ":" in cgroups_path:
        raise InvalidArgument(
            f'cgroupsPath {cgroups_path!r} has the systemd form "slice:prefix:name" but the '
            'cgroupfs driver is in use (paths must look like "/a/b")'
        )
    if "\x00" in cgroups_path:
        raise InvalidArgument("cgroupsPath must not contain NUL bytes")
    cleaned = posixpath.normpath("/" + cgroups_path.lstrip("/"))  # "//x" would survive normpath
    if cleaned == "/":
        raise InvalidArgument(f"cgroupsPath {cgroups_path!r} names the cgroup the container cannot own")
    return cleaned if cgroups_path.startswith("/") else cleaned[1:]


def relative_to_mount(mount: Mount, cgroup: str) -> str:
    """A path from /proc/self/cgroup seen through a mount whose root may be a sub-cgroup."""
    root = mount.root.rstrip("/")
    if root and (cgroup == root or cgroup.startswith(root + "/")):
        cgroup = cgroup[len(root) :]
    return cgroup.strip("/")


def hierarchy_dir(mount: Mount, inner: str, own: str | None) -> str:
    """Absolute directory of inner in the hierarchy mounted at mount; own is the runtime's cgroup there
    (from /proc/self/cgroup), used for relative paths."""
    if inner.startswith("/"):
        return posixpath.join(mount.mountpoint, inner.lstrip("/"))
    base = relative_to_mount(mount, own or "/")
    return posixpath.normpath(posixpath.join(mount.mountpoint, base, inner))
