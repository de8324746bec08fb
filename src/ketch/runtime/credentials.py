"""The last steps before exec, shared by a container's init and by exec'd processes.

Order matters and follows runc's finalizeNamespace: rlimits and oom score while still privileged; then
the bounding set; keep capabilities across setuid; groups, gid, uid; the capability sets; ambient last.
"""

from __future__ import annotations

import os
import resource

from ketch.common.errors import SystemFailure
from ketch.runtime.kernel_files import write_value
from ketch.spec.capabilities import cap_mask
from ketch.spec.oci_runtime import RLIMITS
from ketch.sys import linux as L

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["apply_capabilities", "apply_privileged_settings", "apply_user", "lookup_executable"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def apply_privileged_settings(process: dict[str, Any]) -> None:
    """rlimits, oomScoreAdj, no_new_privs, LSM labels: what needs privilege or must precede the user switch."""
    for rlimit in process.get("rlimits", []):
        try:
            resource.setrlimit(RLIMITS[rlimit["type"]], (rlimit["soft"], rlimit["hard"]))
        except (OSError, ValueError) as exc:
            raise SystemFailure(f"set {rlimit['type']} to {rlimit['soft']}:{rlimit['hard']}: {exc}") from None
    if "oomScoreAdj" in process:
        write_value("/proc/self/oom_score_adj", str(process["oomScoreAdj"]))
    _apply_lsm(process)


def _apply_lsm(process: dict[str, Any]) -> None:
    """AppArmor and SELinux labels take effect at exec, and only where the kernel has the LSM."""
    profile = process.get("apparmorProfile")
    if profile and _lsm_enabled("apparmor"):
        write_value("/proc/self/attr/apparmor/exec", f"exec {profile}")
    label = process.get("selinuxLabel")
    if label and _lsm_enabled("selinux"):
        write_value("/proc/self/attr/exec", label)


def _lsm_enabled(name: str) -> bool:
    try:
        with open("/sys/kernel/security/lsm", "rb") as f:
            return name.encode() in f.read().split(b",")
    except OSError:
        return False


def set_no_new_privileges() -> None:
    try:
        L.prctl(L.PR_SET_NO_NEW_PRIVS, 1)
    except OSError as exc:
        raise SystemFailure.from_oserror("set no_new_privs", exc) from None


def drop_bounding(process: dict[str, Any]) -> None:
    caps = process.get("capabilities")
    if caps is None:
        return
    last = L.last_cap()
    keep = cap_mask(caps.get("bounding", []), last_cap=last)
    for number in range(last + 1):
        if not keep & (1 << number):
            try:
                L.prctl(L.PR_CAPBSET_DROP, number)
            except OSError as exc:
                raise SystemFailure.from_oserror(
                    f"drop capability {number} from the bounding set", exc
                ) from None


def apply_user(process: dict[str, Any]) -> None:
    """Switch to the configured uid/gid and groups; capabilities survive for :func:`apply_capabilities`."""
    user = process.get("user", {})
    uid = user.get("uid", 0)
    gid = user.get("gid", 0)
    try:
        L.prctl(L.PR_SET_KEEPCAPS, 1)
        groups = user.get("additionalGids", [])
        if groups or _setgroups_allowed():
            os.setgroups(groups)
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        L.prctl(L.PR_SET_KEEPCAPS, 0)
    except OSError as exc:
        raise SystemFailure.from_oserror(f"switch to uid {uid} gid {gid}", exc) from None
    if "umask" in user:
        os.umask(user["umask"])


def _setgroups_allowed() -> bool:
    try:
        with open("/proc/self/setgroups", "rb") as f:
            return f.read().strip() != b"deny"
    except OSError:
        return True


def apply_capabilities(process: dict[str, Any]) -> None:
    caps = process.get("capabilities")
    if caps is None:
        return
    last = L.last_cap()
    effective = cap_mask(caps.get("effective", []), last_cap=last)
    permitted = cap_mask(caps.get("permitted", []), last_cap=last)
    inheritable = cap_mask(caps.get("inheritable", []), last_cap=last)
    ambient = cap_mask(caps.get("ambient", []), last_cap=last)
    try:
        L.capset(effective, permitted, inheritable | ambient)
        L.prctl(L.PR_CAP_AMBIENT, L.PR_CAP_AMBIENT_CLEAR_ALL)
        for number in range(last + 1):
            if ambient & (1 << number):
                # The kernel refuses ambient capabilities that are not also permitted and inheritable;
                # runc ignores those too.
                try:
                    L.prctl(L.PR_CAP_AMBIENT, L.PR_CAP_AMBIENT_RAISE, number)
                except OSError:
                    pass
    except OSError as exc:
        raise SystemFailure.from_oserror("set capabilities", exc) from None


def lookup_executable(program: str, env: list[str]) -> str:
    """Find ``program`` the way execvp would in the (already entered) container root.

    Errors read like runc's and Go's exec.LookPath, since docker maps "executable file not found" to exit
    127 and "permission denied" / "no such file or directory" to 126.
    """
    if "/" in program:
        try:
            st = os.stat(program)
        except OSError as exc:
            reason = (exc.strerror or "").lower()
            raise SystemFailure(f'exec: "{program}": stat {program}: {reason}') from None
        if not os.access(program, os.X_OK) or (st.st_mode & 0o170000) == 0o040000:
            raise SystemFailure(f'exec: "{program}": permission denied')
        return program
    path = DEFAULT_PATH
    for item in env:
        if item.startswith("PATH="):
            path = item[5:]
    for directory in path.split(":"):
        candidate = os.path.join(directory or ".", program)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise SystemFailure(f'exec: "{program}": executable file not found in $PATH')


def home_directory(uid: int, passwd: str = "/etc/passwd") -> str:
    """The home directory of ``uid`` in ``passwd`` (of the current root), or "/" when it has none."""
    try:
        with open(passwd, "rb") as f:
            for line in f.read().decode(errors="replace").splitlines():
                fields = line.split(":")
                if len(fields) >= 6 and fields[2].strip() == str(uid) and fields[5]:
                    return fields[5]
    except OSError:
        pass
    return "/"
