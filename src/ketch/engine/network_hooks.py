"""What the container verbs need from networking, as a narrow interface (engine/networks.py implements it).

At start, ``attach`` puts the container on its networks and says which network namespace the runtime joins and
what goes into its /etc/hosts and /etc/resolv.conf; at exit (and when a start fails) ``detach`` takes it off
them (addresses released, veths and port rules removed, as Docker does when a container stops); ``forget``
drops what a removed container had configured (its endpoints' settings).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ketch.engine.model import ContainerRecord

__all__ = ["Attachment", "Networking", "NoNetworking"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment:
    netns_path: str = ""  # join this namespace; empty: a new, private one (only lo)
    host_network: bool = False
    address: str = ""  # the container's address for its own line in /etc/hosts
    extra_hosts: tuple[str, ...] = ()  # "name:ip" lines (--add-host, --link)
    dns: tuple[str, ...] = ()  # nameservers; empty: the host's
    dns_search: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()


class Networking(Protocol):
    def attach(self, record: ContainerRecord) -> Attachment: ...
    def detach(self, container_id: str) -> None: ...
    def forget(self, container_id: str) -> None: ...


class NoNetworking:
    """Before networks exist: host mode shares the host's namespace, everything else gets a private one."""

    def attach(self, record: ContainerRecord) -> Attachment:
        return Attachment(host_network=record.host_config.network_mode == "host")

    def detach(self, container_id: str) -> None:
        return None

    def forget(self, container_id: str) -> None:
        return None
