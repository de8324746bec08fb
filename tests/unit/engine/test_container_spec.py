"""The pieces that turn a container record into what runs: image merge, OCI spec, /etc files, users, events."""

from __future__ import annotations

from pathlib import Path

import pytest

from ketch.common.errors import InvalidArgument
from ketch.engine.etc_files import hosts_text, resolv_conf_text
from ketch.engine.events import EventBus, EventFilter
from ketch.engine.merge import merge_image_config
from ketch.engine.model import ContainerConfig, ContainerRecord, HostConfig, parse_create_body
from ketch.engine.ocispec import MASKED_PATHS, SpecInputs, build_spec, container_env
from ketch.engine.users import resolve_user
from ketch.spec import oci_image
from ketch.spec.oci_runtime import validate
from ketch.spec.seccomp_profile import DEFAULT_CAPABILITIES


def _record(body: dict[str, object], image: oci_image.ContainerConfig | None = None) -> ContainerRecord:
    config, host = parse_create_body({"Image": "busybox", **body}, host=None)
    merged = merge_image_config(config, image or oci_image.ContainerConfig(cmd=("sh",), env=("PATH=/bin",)))
    return ContainerRecord(id="ab" * 32, name="/x", image_id="sha256:" + "0" * 64, created_at=0, config=merged,
                           host_config=host.with_create_defaults())  # fmt: skip


@pytest.fixture
def rootfs(tmp_path: Path) -> str:
    etc = tmp_path / "rootfs" / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\nwww:x:33:\nextra:x:50:www\n")
    return str(tmp_path / "rootfs")


def _spec(record: ContainerRecord, rootfs: str, tmp_path: Path) -> dict[str, object]:
    return build_spec(record, SpecInputs(rootfs=rootfs, container_dir=str(tmp_path), init_path="/bin/true"))


def test_merge_follows_docker() -> None:
    image = oci_image.ContainerConfig(cmd=("nginx",), entrypoint=("/entry",), env=("A=1", "B=2"),
                                      working_dir="/srv", labels={"l": "image", "k": "v"})  # fmt: skip
    merged = merge_image_config(ContainerConfig(env=("B=3",), labels={"l": "user"}), image)
    assert merged.env == ("B=3", "A=1")
    assert merged.entrypoint == ("/entry",) and merged.cmd == ("nginx",)
    assert merged.working_dir == "/srv" and merged.labels == {"l": "user", "k": "v"}
    # an Entrypoint given by the user drops the image's Cmd
    assert merge_image_config(ContainerConfig(entrypoint=("ls",)), image).cmd is None
    with pytest.raises(InvalidArgument, match="No command specified"):
        merge_image_config(ContainerConfig(), oci_image.ContainerConfig())


def test_default_spec_is_docker_s(rootfs: str, tmp_path: Path) -> None:
    spec = _spec(_record({"Cmd": ["echo", "hi"], "Tty": True}), rootfs, tmp_path)
    validate(spec)
    process = spec["process"]
    assert process["args"] == ["echo", "hi"] and process["terminal"] is True  # type: ignore[index]
    assert sorted(process["capabilities"]["bounding"]) == sorted(DEFAULT_CAPABILITIES)  # type: ignore[index]
    env = process["env"]  # type: ignore[index]
    assert "TERM=xterm" in env and f"HOSTNAME={'ab' * 6}" in env and "PATH=/bin" in env
    linux = spec["linux"]
    assert linux["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"  # type: ignore[index]
    assert set(MASKED_PATHS) <= set(linux["maskedPaths"])  # type: ignore[index]
    assert {n["type"] for n in linux["namespaces"]} >= {"pid", "network", "ipc", "uts", "mount"}  # type: ignore[index]
    shm = next(m for m in spec["mounts"] if m["destination"] == "/dev/shm")  # type: ignore[union-attr,index]
    assert "size=67108864" in shm["options"]
    assert spec["hostname"] == "ab" * 6


def test_privileged_and_options(rootfs: str, tmp_path: Path) -> None:
    spec = _spec(_record({"Cmd": ["true"], "HostConfig": {"Privileged": True}}), rootfs, tmp_path)
    assert "seccomp" not in spec["linux"] and "maskedPaths" not in spec["linux"]  # type: ignore[operator]
    assert spec["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]  # type: ignore[index]
    body = {"Cmd": ["true"], "User": "www", "HostConfig": {
        "Memory": 64 << 20, "NanoCpus": 500_000_000, "PidsLimit": 10, "CapDrop": ["ALL"], "CapAdd": ["NET_ADMIN"],
        "SecurityOpt": ["no-new-privileges", "seccomp=unconfined"], "ReadonlyRootfs": True, "Init": True,
        "Tmpfs": {"/run": "size=1m"}, "Sysctls": {"net.ipv4.ip_forward": "1"},
        "Ulimits": [{"Name": "nofile", "Soft": 100, "Hard": 200}], "NetworkMode": "host"}}  # fmt: skip
    spec = _spec(_record(body), rootfs, tmp_path)
    validate(spec)
    process, linux = spec["process"], spec["linux"]
    assert process["user"] == {"uid": 33, "gid": 33, "additionalGids": [33, 50]}  # type: ignore[index]
    assert process["capabilities"]["bounding"] == ["CAP_NET_ADMIN"]  # type: ignore[index]
    assert process["noNewPrivileges"] is True and "seccomp" not in linux  # type: ignore[index,operator]
    assert process["args"][:2] == ["/sbin/docker-init", "--"]  # type: ignore[index]
    assert process["rlimits"] == [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}]  # type: ignore[index]
    res = linux["resources"]  # type: ignore[index]
    assert res["memory"]["limit"] == 64 << 20 and res["pids"] == {"limit": 10}
    assert res["cpu"] == {"period": 100000, "quota": 50000}
    assert "network" not in {n["type"] for n in linux["namespaces"]}  # type: ignore[index]
    assert spec["root"]["readonly"] is True  # type: ignore[index]
    assert any(m["destination"] == "/run" and "size=1m" in m["options"] for m in spec["mounts"])  # type: ignore[union-attr,index]


def test_users(rootfs: str) -> None:
    assert resolve_user(rootfs, "").uid == 0
    assert resolve_user(rootfs, "www:root") == resolve_user(rootfs, "33:0")
    assert resolve_user(rootfs, "1234:1234").uid == 1234
    with pytest.raises(InvalidArgument, match="unable to find user nobody"):
        resolve_user(rootfs, "nobody")
    with pytest.raises(InvalidArgument, match="unable to find group nogroup"):
        resolve_user(rootfs, "www:nogroup")


def test_env_and_etc_files() -> None:
    record = _record({"Cmd": ["true"], "Env": ["PATH=/custom", "X=1"]})
    env = container_env(record, "host")
    assert "PATH=/custom" in env and "HOSTNAME=host" in env and "X=1" in env
    assert not any(e.startswith("PATH=/usr") for e in env)
    assert "10.0.0.1\thost\n" in hosts_text("host", address="10.0.0.1")
    text = "nameserver 127.0.0.53\nnameserver 192.0.2.1\nsearch example\noptions ndots:2\n"
    assert resolv_conf_text(text) == "nameserver 192.0.2.1\nsearch example\noptions ndots:2\n"
    assert "127.0.0.53" in resolv_conf_text(text, host_network=True)
    assert resolv_conf_text(text, dns=("192.0.2.9",)).startswith("nameserver 192.0.2.9\n")


def test_events_filters_and_replay() -> None:
    bus = EventBus()
    seen = []
    bus.publish("container", "create", "c1", {"name": "web", "image": "busybox"})
    token, past = bus.subscribe(seen.append, since_ns=0)
    assert [e.action for e in past] == ["create"]
    bus.publish("container", "start", "c1", {"name": "web", "image": "busybox", "env": "prod"})
    bus.publish("image", "pull", "busybox:latest", {"name": "busybox"})
    bus.unsubscribe(token)
    bus.publish("container", "die", "c1", {"name": "web"})
    assert [e.action for e in seen] == ["start", "pull"]
    flt = EventFilter.from_api({"type": ["container"], "container": ["web"], "event": ["start"]})
    assert [e.action for e in bus.recent(0) if flt.match(e)] == ["start"]
    assert [e.action for e in bus.recent(0) if EventFilter.from_api({"label": ["env=prod"]}).match(e)] == [
        "start"
    ]
    assert bus.recent(0)[1].to_api()["Actor"]["Attributes"]["image"] == "busybox"
    with pytest.raises(InvalidArgument, match="invalid filter 'bogus'"):
        EventFilter.from_api({"bogus": ["x"]})


def test_host_config_default_runtime() -> None:
    assert HostConfig().with_create_defaults().runtime == "ketch-runtime"
