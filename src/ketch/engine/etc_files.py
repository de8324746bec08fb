"""The /etc/hostname, /etc/hosts and /etc/resolv.conf a container gets, written into its directory.

As in moby (libnetwork/etchosts, resolvconf): hosts has the loopback lines, the container's own name and any
``--add-host`` entries; resolv.conf is the host's with loopback nameservers dropped (they mean nothing in the
container's network namespace) unless the container shares the host's network. ``--dns``, ``--dns-search`` and
``--dns-option`` replace the host's values. Nothing here resolves or queries any name.
"""

from __future__ import annotations

import ipaddress
import os

from ketch.common.atomic import atomic_write

__all__ = ["hosts_text", "resolv_conf_text", "write_etc_files"]

_LOOPBACK_HOSTS = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)


def hosts_text(hostname: str, *, address: str = "", extra: tuple[str, ...] = ()) -> str:
    """``extra`` holds ``name:ip`` (``--add-host``) entries."""
    lines = [_LOOPBACK_HOSTS]
    for entry in extra:
        name, _, ip = entry.partition(":")
        lines.append(f"{ip}\t{name}\n")
    if address:
        lines.append(f"{address}\t{hostname}\n")
    return "".join(lines)


def _is_loopback(text: str) -> bool:
    try:
        return ipaddress.ip_address(text.split("%")[0]).is_loopback
    except ValueError:
        return False


def resolv_conf_text(
    host_text: str,
    *,
    host_network: bool = False,
    dns: tuple[str, ...] = (),
    search: tuple[str, ...] = (),
    options: tuple[str, ...] = (),
) -> str:
    nameservers, searches, opts, other = [], [], [], []
    for line in host_text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith(("#", ";")):
            continue
        if fields[0] == "nameserver" and len(fields) > 1:
            if host_network or not _is_loopback(fields[1]):
                nameservers.append(fields[1])
        elif fields[0] in ("search", "domain"):
            searches = fields[1:]
        elif fields[0] == "options":
            opts.extend(fields[1:])
        else:
            other.append(line)
    nameservers = list(dns) or nameservers
    searches = list(search) or searches
    opts = list(options) or opts
    out = [f"nameserver {ns}" for ns in nameservers]
    if searches:
        out.append("search " + " ".join(searches))
    if opts:
        out.append("options " + " ".join(opts))
    return "\n".join([*out, *other]) + "\n"


def write_etc_files(
    directory: str,
    hostname: str,
    *,
    domainname: str = "",
    host_network: bool = False,
    address: str = "",
    extra_hosts: tuple[str, ...] = (),
    dns: tuple[str, ...] = (),
    dns_search: tuple[str, ...] = (),
    dns_options: tuple[str, ...] = (),
    host_resolv_conf: str = "/etc/resolv.conf",
) -> None:
    full = f"{hostname}.{domainname}" if domainname else hostname
    if host_network:
        hostname = os.uname().nodename
        try:
            with open("/etc/hosts") as f:
                hosts = f.read()
        except OSError:
            hosts = _LOOPBACK_HOSTS
        hosts += "".join(f"{e.partition(':')[2]}\t{e.partition(':')[0]}\n" for e in extra_hosts)
    else:
        hosts = hosts_text(full, address=address, extra=extra_hosts)
    try:
        with open(host_resolv_conf) as f:
            resolv = f.read()
    except OSError:
        resolv = ""
    atomic_write(os.path.join(directory, "hostname"), (hostname + "\n").encode(), mode=0o644)
    atomic_write(os.path.join(directory, "hosts"), hosts.encode(), mode=0o644)
    atomic_write(
        os.path.join(directory, "resolv.conf"),
        resolv_conf_text(
            resolv, host_network=host_network, dns=dns, search=dns_search, options=dns_options
        ).encode(),
        mode=0o644,
    )
