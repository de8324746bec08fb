"""macvlan and ipvlan networks through the docker CLI. The parent is an interface the test makes (a veth pair:
this kernel may lack the dummy driver), never a real host interface; traffic stays between the containers."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from tests.interop.ketchd import Ketchd

pytestmark = pytest.mark.interop

IMAGE = "busybox:ketch"


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)


@pytest.fixture
def parent() -> Iterator[str]:
    tag = uuid.uuid4().hex[:4]
    name, peer = f"kd-mvp{tag}", f"kd-mvq{tag}"
    made = _ip("link", "add", name, "type", "veth", "peer", "name", peer)
    if made.returncode != 0:
        pytest.skip(f"cannot make a veth parent: {made.stderr.strip()}")
    _ip("link", "set", name, "up")
    _ip("link", "set", peer, "up")
    try:
        yield name
    finally:
        _ip("link", "del", name)


def test_macvlan_network(ketchd: Ketchd, parent: str) -> None:
    net = f"kmv-{uuid.uuid4().hex[:6]}"
    names = [f"{net}-a", f"{net}-b"]
    ok = ketchd.ok
    before = _ip("-j", "link").stdout
    try:
        ok("network", "create", "-d", "macvlan", "-o", f"parent={parent}", "--subnet", "10.196.5.0/24", net)
        info = json.loads(ok("network", "inspect", net))[0]
        assert info["Driver"] == "macvlan" and info["Options"]["parent"] == parent
        for name in names:
            ok("run", "-d", "--name", name, "--network", net, IMAGE, "sleep", "600")
        addr = json.loads(ok("inspect", names[1]))[0]["NetworkSettings"]["Networks"][net]["IPAddress"]
        assert addr.startswith("10.196.5.")
        assert "eth0@" in ok("exec", names[0], "ip", "link", "show", "eth0")  # a link with a lower device
        for target in (addr, names[1]):  # by address, and by name through the embedded resolver
            done = ketchd.docker("exec", names[0], "ping", "-c1", "-W2", target)
            assert done.returncode == 0, done.stdout + done.stderr
        bad = ketchd.docker("network", "create", "-d", "macvlan", "-o", "macvlan_mode=nosuch", "-o",
                            f"parent={parent}", f"{net}-bad")  # fmt: skip
        assert bad.returncode != 0 and "macvlan mode 'nosuch' is not valid" in bad.stderr
    finally:
        ketchd.docker("rm", "-f", *names)
        ketchd.docker("network", "rm", net)
    # the sub-interfaces lived in the containers' namespaces: the host's links are as they were
    assert {link["ifname"] for link in json.loads(_ip("-j", "link").stdout)} == {
        link["ifname"] for link in json.loads(before)
    }
