"""Replace pip's console-script launchers of the short-lived commands with lean ones.

pip's generated launcher imports ``re`` (a few ms) and runs with site-packages processing (``site``, the
editable install's ``.pth`` finder); for ``ketch-runtime``, which containerd runs several times per
container, and for the ``ketch`` CLI, whose every command should start about as fast as the docker CLI's, that
is a large share of the time. The lean launcher runs the venv's interpreter with ``-I -S`` (isolated, no site)
and puts the directory that holds the ``ketch`` package on ``sys.path`` itself. Both commands need only the
standard library (tests/unit/cli/test_cli_startup.py checks the CLI's side), so nothing else from
site-packages is wanted.

``-I`` also ignores PYTHONDONTWRITEBYTECODE: a module edited after ``make venv`` compiled it is compiled once
and its bytecode kept, rather than compiled again on every call.
"""

from __future__ import annotations

import os
import sys

import ketch

COMMANDS = {"ketch-runtime": "ketch.runtime.cli", "ketch": "ketch.cli.main"}

# os._exit skips the interpreter's finalisation (module teardown, ~3 ms) once output is flushed; a reader that
# went away (``ketch ps | head -1``) is not an error worth a traceback, as with the CLI's own BrokenPipeError.
TEMPLATE = """#!{python} -IS
import os, sys
{prelude}sys.path.insert(0, {path!r})
from {module} import main
code = main()
try:
    sys.stdout.flush()
    sys.stderr.flush()
except BrokenPipeError:
    code = code or 1
os._exit(code)
"""

# -I ignores PYTHONUNBUFFERED, which pip's launcher honoured: the CLI keeps it (set, stdout and stderr reach a
# shared pipe in the order they were written, as the docker CLI's do), as python -u would do it.
UNBUFFERED = """if os.environ.get("PYTHONUNBUFFERED"):
    import io
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None:
            raw = io.FileIO(stream.fileno(), "w", closefd=False)
            setattr(sys, name, io.TextIOWrapper(raw, stream.encoding, stream.errors, "\\n", write_through=True))
"""
PRELUDES = {"ketch": UNBUFFERED}


def render(name: str, python: str, path: str) -> str:
    """The launcher of command ``name``."""
    return TEMPLATE.format(python=python, path=path, module=COMMANDS[name], prelude=PRELUDES.get(name, ""))


def main() -> None:
    bindir = os.path.dirname(sys.executable)
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(ketch.__file__)))
    for name in COMMANDS:
        target = os.path.join(bindir, name)
        tmp = target + ".tmp"
        with open(tmp, "w") as f:
            f.write(render(name, sys.executable, package_parent))
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)


if __name__ == "__main__":
    main()
