"""Make a busybox root filesystem and an OCI bundle from Debian's busybox-static (no network needed).

python tests/fakes/busybox.py BUNDLE_DIR [COMMAND...]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any

BUSYBOX = shutil.which("busybox") or "/bin/busybox"

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n"


def make_rootfs(path: str) -> str:
    """Populate ``path`` with busybox and a link for each of its applets."""
    for d in (
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "root",
        "var/tmp",
        "home",
    ):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    os.chmod(os.path.join(path, "tmp"), 0o1777)
    shutil.copy2(BUSYBOX, os.path.join(path, "bin/busybox"))
    applets = subprocess.run(
        [BUSYBOX, "--list-full"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        link = os.path.join(path, applet)
        if applet == "bin/busybox" or os.path.lexists(link):
            continue
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink("/bin/busybox", link)
    for name, text in (("etc/passwd", PASSWD), ("etc/group", GROUP), ("etc/hostname", "busybox\n")):
        with open(os.path.join(path, name), "w") as f:
            f.write(text)
    return path


def make_config(args: list[str], **overrides: Any) -> dict[str, Any]:
    """A config.json for a busybox container; ``overrides`` replace top-level keys."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "src"))
    from ketch.spec.oci_runtime import default_spec

    config = default_spec()
    config["process"]["terminal"] = False
    config["process"]["args"] = args
    config["root"]["readonly"] = False
    config.update(overrides)
    return config


def make_bundle(
    path: str, args: list[str] | None = None, *, rootfs_from: str | None = None, **overrides: Any
) -> str:
    """Create ``path`` with ``rootfs/`` (copied from ``rootfs_from`` when given) and ``config.json``."""
    os.makedirs(path, exist_ok=True)
    rootfs = os.path.join(path, "rootfs")
    if rootfs_from:
        shutil.copytree(rootfs_from, rootfs, symlinks=True)
    else:
        make_rootfs(rootfs)
    write_config(path, make_config(args or ["sh"], **overrides))
    return path


def write_config(bundle: str, config: dict[str, Any]) -> None:
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f, indent=2)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    make_bundle(sys.argv[1], sys.argv[2:] or ["sh"])
