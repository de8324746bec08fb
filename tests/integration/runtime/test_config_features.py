"""Each config.json feature, observed from inside a real container."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from tests.integration.runtime.conftest import Runtime

from ketch.spec.capabilities import cap_mask

pytestmark = pytest.mark.root


def run_sh(
    rt: Runtime,
    cid: str,
    script: str,
    name: str = "bundle",
    **overrides: object,
) -> subprocess.CompletedProcess[str]:
    bundle = rt.bundle(["sh", "-c", script], name=name, **overrides)
    return rt.run(bundle, cid)


def test_process_settings(rt: Runtime, unique_id: str) -> None:
    proc = run_sh(
        rt,
        unique_id,
        "echo $GREETING; pwd; hostname; id -u; id -g; id -G; umask; ulimit -n; cat /proc/self/oom_score_adj",
        hostname="kt-host",
        process={
            "env": ["PATH=/bin:/usr/bin", "GREETING=hi"],
            "cwd": "/tmp",
            "user": {"uid": 1000, "gid": 1000, "additionalGids": [5, 65534], "umask": 0o027},
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 512}],
            "oomScoreAdj": 123,
        },
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:-1] == [
        "hi",
        "/tmp",
        "kt-host",
        "1000",
        "1000",
        "1000 5 65534",
        "0027",
        "512",
        "123",
    ]


def test_capabilities_dropped(rt: Runtime, unique_id: str) -> None:
    caps = ["CAP_KILL", "CAP_NET_BIND_SERVICE"]
    proc = run_sh(
        rt,
        unique_id,
        "grep -E '^Cap(Eff|Prm|Bnd|Amb|Inh)' /proc/self/status",
        process={
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
                "inheritable": [],
                "ambient": [],
            }
        },
    )
    fields = dict(line.split(":\t") for line in proc.stdout.splitlines())
    want = f"{cap_mask(caps):016x}"
    assert fields["CapEff"] == want and fields["CapPrm"] == want and fields["CapBnd"] == want
    assert fields["CapAmb"] == "0" * 16
    # and without CAP_CHOWN, chown is refused even for root
    denied = run_sh(
        rt,
        unique_id + "b",
        "touch /tmp/f && chown 65534 /tmp/f",
        name="b2",
        process={"capabilities": {"bounding": caps, "effective": caps, "permitted": caps}},
    )
    assert denied.returncode != 0 and "Operation not permitted" in denied.stderr


def test_ambient_capabilities_for_non_root(rt: Runtime, unique_id: str) -> None:
    caps = ["CAP_NET_BIND_SERVICE"]
    proc = run_sh(
        rt,
        unique_id,
        "grep CapEff /proc/self/status",
        process={
            "user": {"uid": 1000, "gid": 1000},
            "capabilities": {
                k: caps for k in ("bounding", "effective", "permitted", "inheritable", "ambient")
            },
        },
    )
    assert proc.stdout.split()[1] == f"{cap_mask(caps):016x}"


def test_no_new_privileges(rt: Runtime, unique_id: str) -> None:
    on = run_sh(rt, unique_id, "grep NoNewPrivs /proc/self/status", process={"noNewPrivileges": True})
    off = run_sh(
        rt,
        unique_id + "b",
        "grep NoNewPrivs /proc/self/status",
        name="b2",
        process={"noNewPrivileges": False},
    )
    assert on.stdout.split()[1] == "1" and off.stdout.split()[1] == "0"


def test_seccomp_errno(rt: Runtime, unique_id: str) -> None:
    seccomp = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}],
    }
    proc = run_sh(
        rt, unique_id, "mkdir /tmp/x; echo rc=$?; touch /tmp/y && echo touched", linux={"seccomp": seccomp}
    )
    assert "Function not implemented" in proc.stderr
    assert "rc=1" in proc.stdout and "touched" in proc.stdout
    # the same filter under no_new_privs (loaded last, after the capability drop)
    proc = run_sh(
        rt,
        unique_id + "b",
        "mkdir /tmp/x",
        name="b2",
        linux={"seccomp": seccomp},
        process={"noNewPrivileges": True},
    )
    assert "Function not implemented" in proc.stderr


def test_readonly_rootfs(rt: Runtime, unique_id: str) -> None:
    proc = run_sh(
        rt,
        unique_id,
        "touch /newfile; echo rc=$?; touch /dev/shm/ok && echo tmpfs-writable",
        root={"path": "rootfs", "readonly": True},
    )
    assert "Read-only file system" in proc.stderr
    assert "rc=1" in proc.stdout and "tmpfs-writable" in proc.stdout


def test_masked_and_readonly_paths(rt: Runtime, unique_id: str) -> None:
    proc = run_sh(
        rt,
        unique_id,
        "wc -c < /proc/timer_list; ls /sys/firmware | wc -l; echo x > /proc/sys/kernel/domainname; "
        "echo rc=$?",
    )
    lines = proc.stdout.split()
    assert lines[0] == "0" and lines[1] == "0"
    assert "rc=1" in proc.stdout and "Read-only file system" in proc.stderr


def test_default_devices_and_links(rt: Runtime, unique_id: str) -> None:
    proc = run_sh(
        rt,
        unique_id,
        "for d in null zero full random urandom tty; do stat -c '%n %t,%T %a' /dev/$d; done; "
        "readlink /dev/fd; readlink /dev/stdin; readlink /dev/ptmx; head -c 4 /dev/zero | wc -c; "
        "mount | grep -c ' /dev/shm '",
        linux={"devices": [{"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 0o600}]},
    )
    out = proc.stdout.splitlines()
    assert out[:6] == [
        "/dev/null 1,3 666",
        "/dev/zero 1,5 666",
        "/dev/full 1,7 666",
        "/dev/random 1,8 666",
        "/dev/urandom 1,9 666",
        "/dev/tty 5,0 666",
    ]
    assert out[6:9] == ["/proc/self/fd", "/proc/self/fd/0", "pts/ptmx"]
    assert out[9] == "4" and out[10] == "1"
    listed = run_sh(
        rt,
        unique_id + "b",
        "stat -c '%t,%T %a' /dev/kmsg",
        name="b2",
        linux={"devices": [{"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 0o600}]},
    )
    assert listed.stdout.strip() == "1,b 600"


def test_mounts_bind_tmpfs_options(rt: Runtime, unique_id: str, tmp_path: Path) -> None:
    host = tmp_path / "share"
    host.mkdir()
    (host / "file").write_text("from-host")
    mounts = rt.config(rt.bundle(["true"], name="tmp"))["mounts"] + [
        {"destination": "/data/ro", "type": "bind", "source": str(host), "options": ["rbind", "ro"]},
        {"destination": "/data/rw", "type": "bind", "source": str(host), "options": ["bind", "rw"]},
        {
            "destination": "/scratch",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "noexec", "size=1m", "mode=1777"],
        },
    ]
    proc = run_sh(
        rt,
        unique_id,
        "cat /data/ro/file; touch /data/ro/x; echo ro=$?; echo w > /data/rw/written; "
        "stat -c %a /scratch; grep ' /scratch ' /proc/mounts; "
        "dd if=/dev/zero of=/scratch/big bs=1k count=2048 2>/dev/null; echo dd=$?",
        mounts=mounts,
    )
    out = proc.stdout
    assert "from-host" in out and "ro=1" in out
    assert (host / "written").read_text() == "w\n"
    assert "1777" in out and "size=1024k" in out and "noexec" in out
    assert "dd=1" in out


def test_symlink_in_rootfs_cannot_escape(rt: Runtime, unique_id: str, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    bundle = rt.bundle(["sh", "-c", "ls /evil/"], name="bundle")
    rootfs = bundle / "rootfs"
    os.symlink(str(outside), rootfs / "evil")  # absolute link: must resolve inside the rootfs
    os.symlink("../../../../../../../..", rootfs / "up")
    config = rt.config(bundle)
    config["mounts"] += [
        {"destination": "/evil/mnt", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]},
        {"destination": "/up/tmp/escaped", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]},
    ]
    config["linux"]["devices"] = [{"path": "/evil/null2", "type": "c", "major": 1, "minor": 3}]
    rt.write_config(bundle, config)
    proc = rt.run(bundle, unique_id)
    assert proc.returncode == 0, proc.stderr
    assert list(outside.iterdir()) == []
    assert not Path("/tmp/escaped").exists()
    assert (rootfs / str(outside).lstrip("/") / "mnt").is_dir()
    assert (rootfs / "tmp/escaped").is_dir()


def test_user_namespace_mapping(rt: Runtime, unique_id: str, tmp_path: Path) -> None:
    # The container's root is host uid 100000: it must be able to reach the bundle.
    for parent in (tmp_path, *tmp_path.parents):
        if parent == Path("/tmp"):
            break
        parent.chmod(parent.stat().st_mode | 0o011)
    proc = run_sh(
        rt,
        unique_id,
        "cat /proc/self/uid_map /proc/self/gid_map; id -u; stat -c %u /bin/busybox",
        linux={
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "user")],
            "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        },
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line.split() for line in proc.stdout.splitlines()]
    assert lines[0] == ["0", "100000", "65536"] and lines[1] == ["0", "100000", "65536"]
    assert lines[2] == ["0"]
    assert lines[3] == ["65534"]  # host root is unmapped: shown as the overflow uid


def test_sysctl_and_namespaces(rt: Runtime, unique_id: str) -> None:
    proc = run_sh(
        rt,
        unique_id,
        "cat /proc/sys/net/ipv4/ip_forward; ls /sys/class/net; hostname; cat /proc/sys/kernel/domainname",
        hostname="h1",
        domainname="example.test",
        linux={"sysctl": {"net.ipv4.ip_forward": "1"}},
    )
    assert proc.stdout.split() == ["1", "lo", "h1", "example.test"]


def test_join_network_namespace_by_path(rt: Runtime, unique_id: str) -> None:
    name = unique_id
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(
            ["ip", "-n", name, "link", "add", "ktveth0", "type", "veth", "peer", "name", "ktveth1"],
            check=True,
        )
        namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
        namespaces.append({"type": "network", "path": f"/var/run/netns/{name}"})
        proc = run_sh(rt, unique_id, "ls /sys/class/net", linux={"namespaces": namespaces})
        assert {"ktveth0", "ktveth1"} <= set(proc.stdout.split()), proc.stderr
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)


def test_hooks_run_with_state(rt: Runtime, unique_id: str, tmp_path: Path) -> None:
    out = tmp_path / "hooks"
    out.mkdir()
    bundle = rt.bundle(["sh", "-c", "echo main"])
    config = rt.config(bundle)

    def host_hook(kind: str) -> dict[str, object]:
        return {"path": "/bin/sh", "args": ["sh", "-c", f"cat > {out}/{kind}.json"], "timeout": 5}

    config["hooks"] = {
        kind: [host_hook(kind)]
        for kind in ("prestart", "createRuntime", "createContainer", "poststart", "poststop")
    }
    # startContainer runs in the container: its path resolves in the container's root
    config["hooks"]["startContainer"] = [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /hooks/start.json"]}]
    config["mounts"].append(
        {"destination": "/hooks", "type": "bind", "source": str(out), "options": ["rbind"]}
    )
    rt.write_config(bundle, config)
    proc = rt.run(bundle, unique_id)
    assert proc.returncode == 0, proc.stderr
    expected = {
        "prestart": "creating",
        "createRuntime": "creating",
        "createContainer": "creating",
        "start": "created",
        "poststart": "running",
        "poststop": "stopped",
    }
    for kind, status in expected.items():
        state = json.loads((out / f"{kind}.json").read_text())
        assert state["id"] == unique_id and state["status"] == status, kind
        assert state["bundle"] == str(bundle)
        if status != "stopped":
            assert state["pid"] > 0


def test_failing_and_slow_hooks(rt: Runtime, unique_id: str) -> None:
    bundle = rt.bundle(["true"])
    config = rt.config(bundle)
    config["hooks"] = {"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "echo nope >&2; exit 4"]}]}
    rt.write_config(bundle, config)
    proc = rt.run(bundle, unique_id)
    assert proc.returncode == 1 and "createRuntime hook #0" in proc.stderr and "nope" in proc.stderr
    assert not (rt.root / unique_id).exists()
    config["hooks"] = {"prestart": [{"path": "/bin/sleep", "args": ["sleep", "5"], "timeout": 1}]}
    rt.write_config(bundle, config)
    proc = rt.run(bundle, unique_id)
    assert proc.returncode == 1 and "did not finish within 1s" in proc.stderr


def test_mounts_keep_config_order_around_cgroup_mounts(rt: Runtime, unique_id: str) -> None:
    """A tmpfs on /data listed after a cgroup mount on /data/cg must hide it, as in spec order."""
    bundle = rt.bundle(["sh", "-c", "ls /data/cg 2>&1; echo rc=$?; ip -o link show lo; echo HOME=$HOME"])
    config = rt.config(bundle)
    config["mounts"] += [
        {"destination": "/data/cg", "type": "cgroup", "source": "cgroup", "options": ["ro"]},
        {"destination": "/data", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]},
    ]
    rt.write_config(bundle, config)
    proc = rt.run(bundle, unique_id)
    assert "rc=1" in proc.stdout, proc.stdout
    # and the defaults runc gives a container: loopback up, HOME from /etc/passwd
    assert "<LOOPBACK,UP,LOWER_UP>" in proc.stdout
    assert "HOME=/root" in proc.stdout


def test_user_namespace_with_seccomp_and_tty_modules(rt: Runtime, unique_id: str, tmp_path: Path) -> None:
    """What the init needs after unshare(CLONE_NEWUSER) is loaded before: here a seccomp filter."""
    for parent in (tmp_path, *tmp_path.parents):
        if parent == Path("/tmp"):
            break
        parent.chmod(parent.stat().st_mode | 0o011)
    seccomp = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}],
    }
    proc = run_sh(
        rt,
        unique_id,
        "mkdir /tmp/x; id -u",
        linux={
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "user")],
            "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "seccomp": seccomp,
        },
    )
    assert proc.returncode == 0, proc.stderr
    assert "Function not implemented" in proc.stderr and proc.stdout.strip() == "0"


def test_join_pid_namespace_of_another_container(rt: Runtime, unique_id: str) -> None:
    first = rt.bundle(["sleep", "30"], name="first")
    rt.run(first, unique_id, "-d", check=True)
    init = rt.state(unique_id)["pid"]
    namespaces = [{"type": t} for t in ("ipc", "uts", "mount", "network")]
    namespaces.append({"type": "pid", "path": f"/proc/{init}/ns/pid"})
    proc = run_sh(
        rt,
        unique_id + "b",
        "ps -o pid,args | grep -v grep | grep 'sleep 30'; echo $$",
        name="second",
        linux={"namespaces": namespaces},
    )
    lines = proc.stdout.split("\n")
    assert lines[0].split()[0] == "1", proc.stdout  # the first container's init, seen as pid 1
    assert int(lines[1]) > 1


def test_host_pid_and_network_namespaces(rt: Runtime, unique_id: str) -> None:
    """Without pid and network entries the container shares the host's, as `docker run --pid host --net host`."""
    namespaces = [{"type": t} for t in ("ipc", "uts", "mount")]
    proc = run_sh(rt, unique_id, "echo $$; ls /sys/class/net", linux={"namespaces": namespaces})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.split()
    assert int(out[0]) > 1  # a host pid
    assert set(os.listdir("/sys/class/net")) <= set(out[1:])
