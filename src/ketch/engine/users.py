"""Resolve Docker's ``--user`` (``name|uid[:group|gid]``) against a container's /etc/passwd and /etc/group.

The files are read through :func:`ketch.runtime.paths.secure_join`, so a rootfs whose /etc is a symlink to
somewhere on the host resolves inside the rootfs, never on the host. Messages are moby's
(daemon/oci_linux.go getUser via moby/sys/user).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ketch.common.errors import InvalidArgument
from ketch.runtime.paths import secure_join

__all__ = ["ExecUser", "resolve_user"]

_MAX_FILE = 4 << 20


@dataclass(frozen=True, slots=True)
class ExecUser:
    uid: int
    gid: int
    additional_gids: tuple[int, ...]
    home: str


def _read_table(rootfs: str, path: str) -> list[list[str]]:
    try:
        with open(secure_join(rootfs, path), "rb") as f:
            data = f.read(_MAX_FILE)
    except OSError:
        return []
    rows = []
    for line in data.decode(errors="replace").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rows.append(line.split(":"))
    return rows


def _number(text: str) -> int | None:
    return int(text) if text.isdigit() and len(text) < 11 else None


def resolve_user(rootfs: str, user: str, group_add: tuple[str, ...] = ()) -> ExecUser:
    """The uid, gid and supplementary groups ``user`` means inside ``rootfs`` (``""`` is root)."""
    name, _, group = user.partition(":")
    passwd = [row for row in _read_table(rootfs, "/etc/passwd") if len(row) >= 7]
    groups = [row for row in _read_table(rootfs, "/etc/group") if len(row) >= 3]
    uid, gid, home, username = 0, 0, "/", "root"
    wanted = _number(name) if name else 0
    entry = next(
        (row for row in passwd if (row[0] == name if wanted is None else _number(row[2]) == wanted)), None
    )
    if entry is not None:
        uid, gid = _number(entry[2]) or 0, _number(entry[3]) or 0
        home, username = entry[5] or "/", entry[0]
    elif wanted is None:
        raise InvalidArgument(f"unable to find user {name}: no matching entries in passwd file")
    else:
        uid, username = wanted, ""
    if group:
        number = _number(group)
        found = next((row for row in groups if (row[0] == group if number is None else _number(row[2]) == number)),
                     None)  # fmt: skip
        if found is not None:
            gid = _number(found[2]) or 0
        elif number is None:
            raise InvalidArgument(f"unable to find group {group}: no matching entries in group file")
        else:
            gid = number
    extra: list[int] = []
    if username and not group:  # supplementary groups only for a named user without an explicit group
        for row in groups:
            if username in row[3].split(",") if len(row) > 3 else False:
                number = _number(row[2])
                if number is not None and number != gid:
                    extra.append(number)
    for added in group_add:
        number = _number(added)
        if number is None:
            found = next((row for row in groups if row[0] == added), None)
            if found is None:
                raise InvalidArgument(f"unable to find group {added}: no matching entries in group file")
            number = _number(found[2]) or 0
        extra.append(number)
    return ExecUser(uid, gid, tuple(dict.fromkeys(extra)), home if os.path.isabs(home) else "/")
