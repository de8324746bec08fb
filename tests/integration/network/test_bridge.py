"""Bridges, veth pairs and network namespaces against the real kernel: two namespaces on one bridge reach
each other, and removing everything leaves the host's links as they were."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ketch.network import bridge, netns

pytestmark = pytest.mark.root

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def _links() -> set[str]:
    return set(bridge.links())


def test_two_namespaces_on_a_bridge(tmp_path: Path) -> None:
    before = _links()
    ns = [netns.create(str(tmp_path / "netns" / name)) for name in ("a", "b")]
    name = "kbr-t" + tmp_path.name[-8:].replace("_", "")
    hosts = [bridge.host_ifname(n, name) for n in ("a", "b")]
    try:
        bridge.ensure_bridge(name, ["10.198.7.1/24"])
        bridge.ensure_bridge(name, ["10.198.7.1/24"])  # idempotent
        for n, (path, host) in enumerate(zip(ns, hosts, strict=True)):
            ip = f"10.198.7.{n + 2}"
            bridge.connect(path, name, host_name=host, ifname="eth0", addresses=[f"{ip}/24"],
                           gateways=["10.198.7.1"], mac=bridge.docker_mac(ip))  # fmt: skip
        assert bridge.container_interfaces(ns[0]) == ["lo", "eth0"]
        ping = subprocess.run(["nsenter", f"--net={ns[0]}", BUSYBOX, "ping", "-c1", "-W2", "10.198.7.3"],
                              capture_output=True, text=True, timeout=10)  # fmt: skip
        assert ping.returncode == 0, ping.stdout + ping.stderr
        link = subprocess.run(["nsenter", f"--net={ns[1]}", BUSYBOX, "ip", "link", "show", "eth0"],
                              capture_output=True, text=True, timeout=10)  # fmt: skip
        assert "02:42:0a:c6:07:03" in link.stdout
        with pytest.raises(Exception, match="already exists"):
            bridge.connect(ns[0], name, host_name=hosts[0], ifname="eth1", addresses=["10.198.7.9/24"])
    finally:
        for host in hosts:
            bridge.disconnect(host)
        bridge.delete_bridge(name)
        for path in ns:
            netns.remove(path)
    assert _links() == before
    assert not any(netns.exists(p) for p in ns)
