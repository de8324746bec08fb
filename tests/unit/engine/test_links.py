"""The --link environment, as moby writes it."""

from __future__ import annotations

from ketch.engine.links import link_env
from ketch.engine.model import ContainerConfig, ContainerRecord, HostConfig


def test_link_variables() -> None:
    target = ContainerRecord(
        id="c" * 64, name="/db", image_id="sha256:" + "0" * 64, created_at=0,
        config=ContainerConfig(exposed_ports=("5432/tcp", "53/udp"), env=("PATH=/bin", "PGDATA=/data")),
        host_config=HostConfig(),
    )  # fmt: skip
    env = link_env("/web", "my-db", target, "172.17.0.3")
    assert env[0] == "MY_DB_PORT=udp://172.17.0.3:53"
    assert "MY_DB_PORT_5432_TCP=tcp://172.17.0.3:5432" in env
    assert "MY_DB_PORT_5432_TCP_ADDR=172.17.0.3" in env and "MY_DB_PORT_5432_TCP_PORT=5432" in env
    assert "MY_DB_PORT_53_UDP_PROTO=udp" in env
    assert "MY_DB_NAME=/web/my-db" in env and "MY_DB_ENV_PGDATA=/data" in env
    assert not any(e.startswith("MY_DB_ENV_PATH=") for e in env)
    assert link_env("/web", "db", target, "") == ["DB_NAME=/web/db", "DB_ENV_PGDATA=/data"]
