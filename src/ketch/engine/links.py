"""Docker's legacy ``--link`` environment (moby daemon/links: the variables a linked container sees).

For ``--link db:alias`` with db at 172.17.0.3 exposing 5432/tcp, the container gets ``ALIAS_PORT=tcp://172.17.0.3:5432``,
``ALIAS_PORT_5432_TCP=...`` with ``_ADDR``, ``_PORT``, ``_PROTO``, ``ALIAS_NAME=/me/alias`` and ``ALIAS_ENV_<var>`` for
the linked container's own environment (its Env from the config, without HOME and PATH). The /etc/hosts lines
come from networking (engine/networks.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ketch.engine.model import ContainerRecord

__all__ = ["link_env"]

_ILLEGAL = re.compile(r"[^A-Za-z0-9_]")


def _prefix(alias: str) -> str:
    return _ILLEGAL.sub("_", alias).upper()


def _ports(exposed: Sequence[str]) -> list[tuple[int, str]]:
    out = []
    for key in exposed:
        number, _, proto = key.partition("/")
        if number.isdigit():
            out.append((int(number), proto or "tcp"))
    return sorted(out)


def link_env(own_name: str, alias: str, target: ContainerRecord, ip: str) -> list[str]:
    prefix = _prefix(alias)
    env: list[str] = []
    ports = _ports(target.config.exposed_ports or ())
    if ports and ip:
        first_port, first_proto = ports[0]
        env.append(f"{prefix}_PORT={first_proto}://{ip}:{first_port}")
        for port, proto in ports:
            key = f"{prefix}_PORT_{port}_{proto.upper()}"
            env += [
                f"{key}={proto}://{ip}:{port}",
                f"{key}_ADDR={ip}",
                f"{key}_PORT={port}",
                f"{key}_PROTO={proto}",
            ]
    env.append(f"{prefix}_NAME=/{own_name.lstrip('/')}/{alias}")
    for entry in target.config.env or ():
        key, sep, value = entry.partition("=")
        if sep and key not in ("HOME", "PATH", "HOSTNAME"):
            env.append(f"{prefix}_ENV_{key}={value}")
    return env
