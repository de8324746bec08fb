"""Docker's default capabilities and seccomp profile on a real kernel: busybox containers run by ketch-runtime,
and the profile loaded through libseccomp into a forked child."""

from __future__ import annotations

import ctypes
import errno
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.integration.runtime.conftest import Runtime

from ketch.common.errors import Unsupported
from ketch.runtime import seccomp
from ketch.spec.capabilities import CAPABILITIES, cap_mask
from ketch.spec.seccomp_profile import DEFAULT_CAPABILITIES, default_profile, effective_capabilities
from ketch.sys import seccomp as sc

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="runs containers and loads seccomp filters as root"),
]

DEFAULTS = list(DEFAULT_CAPABILITIES)
_CLONE_NEWUTS = 0x04000000


def _caps(caps: list[str]) -> dict[str, list[str]]:
    """The sets dockerd fills in for a container (no ambient, no inheritable)."""
    return {"bounding": caps, "effective": caps, "permitted": caps}


def _run(
    rt: Runtime, container_id: str, script: str, caps: list[str], profile: dict[str, Any] | None
) -> tuple[int, str]:
    linux: dict[str, Any] = {"seccomp": profile} if profile is not None else {}
    bundle = rt.bundle(
        ["sh", "-c", script], name=container_id, process={"capabilities": _caps(caps)}, linux=linux
    )
    if profile is None:
        config = rt.config(bundle)
        config["linux"].pop("seccomp", None)
        rt.write_config(bundle, config)
    result = rt.run(bundle, container_id, timeout=60)
    return result.returncode, result.stdout + result.stderr


def _status(output: str) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in output.splitlines() if ":\t" in line)


def test_ordinary_commands_work_under_the_default_profile(rt: Runtime, unique_id: str) -> None:
    script = (
        "ls / >/dev/null && echo ls-ok; date >/dev/null && echo date-ok; id -u; "
        "cat /proc/self/status | grep -E '^(Seccomp|Seccomp_filters|CapBnd|CapEff):'; "
        "echo hi > /tmp/f && cat /tmp/f && rm /tmp/f; sleep 0.1 && echo slept"
    )
    code, output = _run(rt, unique_id, script, DEFAULTS, default_profile(DEFAULTS))
    assert code == 0, output
    lines = output.splitlines()
    assert {"ls-ok", "date-ok", "0", "hi", "slept"} <= set(lines), output
    status = _status(output)
    assert status["Seccomp"] == "2", output  # SECCOMP_MODE_FILTER
    assert int(status["CapBnd"], 16) == cap_mask(DEFAULTS)
    assert int(status["CapEff"], 16) == cap_mask(DEFAULTS)


def test_unshare_is_refused_by_the_profile_not_by_the_kernel(rt: Runtime, unique_id: str) -> None:
    # creating a user namespace needs no capability: without the profile it works ...
    script = "unshare -U true 2>&1; echo rc=$?"
    code, control = _run(rt, f"{unique_id}-a", script, DEFAULTS, None)
    if "rc=0" not in control:
        pytest.skip(f"this host does not let a container create a user namespace: {control.strip()}")
    # ... so under the profile the refusal is seccomp's (EPERM, Docker's defaultErrnoRet)
    script = "unshare -U true 2>&1; echo rc=$?; unshare -m true 2>&1; echo rc=$?"
    code, output = _run(rt, f"{unique_id}-b", script, DEFAULTS, default_profile(DEFAULTS))
    assert code == 0, output
    assert output.count("Operation not permitted") == 2, output
    assert "rc=0" not in output, output


def test_cap_sys_admin_lets_mount_through(rt: Runtime, unique_id: str) -> None:
    admin = effective_capabilities(["sys_admin"], [], False)
    script = (
        "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m 2>&1 && echo mounted && umount /tmp/m && echo unmounted; "
        "unshare -m true 2>&1 && echo unshared"
    )
    code, output = _run(rt, f"{unique_id}-a", script, admin, default_profile(admin))
    assert code == 0, output
    assert {"mounted", "unmounted", "unshared"} <= set(output.splitlines()), output
    # the same capability under a profile built for the default set: seccomp refuses what the kernel would allow
    code, output = _run(rt, f"{unique_id}-b", script, admin, default_profile(DEFAULTS))
    assert "mounted" not in output.splitlines() and "unshared" not in output.splitlines(), output
    assert "Operation not permitted" in output, output


# --- loading through libseccomp -------------------------------------------------------------------------


def _in_child(profile: dict[str, Any], probe: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Fork, load ``profile`` in the child (root: CAP_SYS_ADMIN, no no_new_privs needed), report ``probe``."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        status = 0
        try:
            os.close(rfd)
            seccomp.load(profile)
            report: dict[str, Any] = {"ok": probe()}
        except BaseException as exc:
            report = {"error": f"{type(exc).__name__}: {exc}"}
            status = 1
        try:
            os.write(wfd, json.dumps(report).encode())
        finally:
            os._exit(status)
    os.close(wfd)
    chunks = []
    while chunk := os.read(rfd, 65536):
        chunks.append(chunk)
    os.close(rfd)
    os.waitpid(pid, 0)
    result: dict[str, Any] = json.loads(b"".join(chunks))
    return result


def test_default_profile_loads_through_libseccomp_on_this_host(tmp_path: Path) -> None:
    try:
        sc.version()
    except Unsupported as exc:
        pytest.skip(str(exc))
    libc = ctypes.CDLL(None, use_errno=True)  # loaded now: the filter may refuse what dlopen needs later

    def unshare_uts() -> int:
        if libc.unshare(_CLONE_NEWUTS) == 0:
            return 0
        return ctypes.get_errno()

    def probe() -> dict[str, Any]:
        path = tmp_path / f"d{os.getpid()}"
        os.mkdir(path)
        os.rmdir(path)
        with open("/proc/self/status") as f:
            status = _status(f.read())
        return {"pid": os.getpid() > 0, "unshare": unshare_uts(), "seccomp": status.get("Seccomp")}

    for caps in (DEFAULTS, [], list(CAPABILITIES)):
        assert (
            seccomp.compile_program(default_profile(caps)) is not None
        )  # libseccomp builds it for this arch
    # the test process is root with CAP_SYS_ADMIN: only the filter can refuse unshare
    assert _in_child(default_profile(DEFAULTS), probe) == {
        "ok": {"pid": True, "unshare": errno.EPERM, "seccomp": "2"}
    }
    assert _in_child(default_profile(list(CAPABILITIES)), probe) == {
        "ok": {"pid": True, "unshare": 0, "seccomp": "2"}
    }
