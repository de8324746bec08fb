"""Write a busybox base image as a rootfs tarball, made locally from Debian's busybox-static (no registry).

python scripts/base_image.py OUT.tar      then    ketch import OUT.tar busybox:local
"""

from __future__ import annotations

import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fakes.busybox import make_rootfs


def main(out: str) -> int:
    with tempfile.TemporaryDirectory(prefix="ketch-base-") as tmp:
        rootfs = Path(make_rootfs(str(Path(tmp) / "rootfs")))
        with tarfile.open(out, "w") as tar:
            for entry in sorted(rootfs.iterdir()):
                tar.add(entry, arcname=entry.name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
