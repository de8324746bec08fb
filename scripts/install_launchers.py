"""Replace pip's console-script launchers of the short-lived commands with lean ones.

pip's generated launcher imports ``re`` (a few ms) and runs with site-packages processing; for
``ketch-runtime``, which containerd runs several times per container, that is a large share of its time
budget. The lean launcher runs the venv's interpreter with ``-I -S`` (isolated, no site) and puts the
directory that holds the ``ketch`` package on ``sys.path`` itself; ketch-runtime needs only the standard
library, so it needs nothing else from site-packages.
"""

from __future__ import annotations

import os
import sys

import ketch

COMMANDS = {"ketch-runtime": "ketch.runtime.cli"}

# os._exit skips the interpreter's finalisation (module teardown, ~3 ms) once output is flushed.
TEMPLATE = """#!{python} -IS
import os, sys
sys.path.insert(0, {path!r})
from {module} import main
code = main()
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
"""


def main() -> None:
    bindir = os.path.dirname(sys.executable)
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(ketch.__file__)))
    for name, module in COMMANDS.items():
        target = os.path.join(bindir, name)
        tmp = target + ".tmp"
        with open(tmp, "w") as f:
            f.write(TEMPLATE.format(python=sys.executable, path=package_parent, module=module))
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)


if __name__ == "__main__":
    main()
