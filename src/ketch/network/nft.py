"""Apply :mod:`ketch.network.firewall` commands with ``nft -j -f -``; the only I/O of the firewall code.

Every batch is checked before it runs: it may add, insert or delete tables, chains and rules of ketch's own
tables (``ip``/``ip6`` ``ketch``) and nothing else, so a bug upstream cannot flush or edit another program's
rules (iptables-nft tables of dockerd, firewalld, ...). ``nft -f`` applies a batch atomically: all or nothing.

``netns`` (a path such as ``/run/netns/x`` or ``/proc/PID/ns/net``) runs nft in that network namespace via
``nsenter``; tests use it to work on a namespace of their own. Each function lists, then changes: callers
must serialise firewall changes (one writer). :class:`RuleIndex` is that one writer's memory of the handles of
its rules, so that a change is one nft run instead of a listing and a run.
"""

from __future__ import annotations

import json
import shutil
import subprocess

from ketch.common.errors import InvalidArgument, SystemFailure, Unsupported
from ketch.network import firewall

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from ketch.network.firewall import Command

__all__ = [
    "RuleIndex",
    "add",
    "apply",
    "check",
    "delete_tables",
    "list_ketch",
    "nft_binary",
    "remove",
    "snapshot",
    "sync",
]

_VERBS = ("add", "insert", "create", "delete")
_KINDS = ("table", "chain", "rule")


def nft_binary() -> str:
    # ketchd may run with a PATH that lacks the sbin directories.
    found = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
    if not found:
        raise Unsupported("nft (nftables) is not installed: ketch needs it for NAT and network isolation")
    return found


def _argv(args: Sequence[str], netns: str | None) -> list[str]:
    argv = [nft_binary(), *args]
    if netns:
        nsenter = shutil.which("nsenter") or "/usr/bin/nsenter"
        argv = [nsenter, f"--net={netns}", "--", *argv]
    return argv


def _run(args: Sequence[str], *, netns: str | None, stdin: str | None = None, what: str) -> str:
    argv = _argv(args, netns)
    try:
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30, check=False)
    except OSError as exc:
        raise SystemFailure.from_oserror(f"{what}: running {argv[0]}", exc) from None
    except subprocess.TimeoutExpired:
        raise SystemFailure(f"{what}: nft did not finish in 30 s") from None
    if proc.returncode != 0:
        detail = proc.stderr.strip() or f"exit status {proc.returncode}"
        raise SystemFailure(f"{what}: nft: {detail}")
    return proc.stdout


def check(commands: Sequence[Command], table: str = firewall.TABLE) -> None:
    """Refuse any command that is not an add/insert/delete of ketch's own tables, chains or rules."""
    for command in commands:
        if not isinstance(command, dict) or len(command) != 1:
            raise InvalidArgument(f"nft command: expected one verb, got {command!r}")
        ((verb, body),) = command.items()
        if verb not in _VERBS or not isinstance(body, dict) or len(body) != 1:
            raise InvalidArgument(f"nft command {verb!r}: not allowed (only {', '.join(_VERBS)})")
        ((kind, obj),) = body.items()
        if kind not in _KINDS or not isinstance(obj, dict):
            raise InvalidArgument(f"nft command {verb} {kind}: only tables, chains and rules")
        name = obj.get("name") if kind == "table" else obj.get("table")
        if obj.get("family") not in firewall.FAMILIES or name != table:
            raise InvalidArgument(
                f"nft command {verb} {kind}: {obj.get('family')} {name} is not one of ketch's tables "
                f"({' and '.join(f'{f} {table}' for f in firewall.FAMILIES)})"
            )


def apply(
    commands: Sequence[Command], *, table: str = firewall.TABLE, netns: str | None = None, echo: bool = False
) -> list[Command]:
    """Run one atomic batch of commands (checked by :func:`check`). With ``echo``, returns the commands as nft
    carried them out, rules with the handles they got (``nft --echo --handle``); otherwise ``[]``."""
    if not commands:
        return []
    check(commands, table)
    args = ["-e", "-a", "-j", "-f", "-"] if echo else ["-j", "-f", "-"]
    out = _run(args, netns=netns, stdin=json.dumps(firewall.document(commands)), what="nftables batch")
    if not echo:
        return []
    try:
        items = json.loads(out)["nftables"] if out.strip() else []
    except (ValueError, KeyError, TypeError) as exc:
        raise SystemFailure(f"nft --echo: unexpected output: {exc}") from None
    return [item for item in items if isinstance(item, dict) and "metainfo" not in item]


def snapshot(*, netns: str | None = None) -> dict[str, Any]:
    """``nft -j list ruleset``, parsed: the whole ruleset, read-only."""
    out = _run(["-j", "list", "ruleset"], netns=netns, what="listing the nftables ruleset")
    try:
        data = json.loads(out)
    except ValueError as exc:
        raise SystemFailure(f"nft -j list ruleset: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SystemFailure("nft -j list ruleset: not a JSON object")
    return data


def list_ketch(*, table: str = firewall.TABLE, netns: str | None = None) -> dict[str, Any]:
    """ketch's tables only, in the listing's shape (``{"nftables": [...]}``), with rule handles."""
    objects = firewall.ketch_objects(snapshot(netns=netns), table)
    return {"nftables": [{kind: obj} for kind, obj in objects]}


def add(commands: Sequence[Command], *, table: str = firewall.TABLE, netns: str | None = None) -> int:
    """Make sure ketch's tables exist and contain ``commands``' rules; rules already there are not repeated.

    Returns how many commands ran.
    """
    desired = [*firewall.base_ruleset(table), *commands]
    todo = firewall.missing_commands(list_ketch(table=table, netns=netns), desired, table)
    apply(todo, table=table, netns=netns)
    return len(todo)


def sync(commands: Sequence[Command], *, table: str = firewall.TABLE, netns: str | None = None) -> int:
    """Make ketch's tables hold exactly the base rules and ``commands``' rules (after a daemon restart)."""
    desired = [*firewall.base_ruleset(table), *commands]
    todo = firewall.sync_commands(list_ketch(table=table, netns=netns), desired, table)
    apply(todo, table=table, netns=netns)
    return len(todo)


def remove(owner: str, *, table: str = firewall.TABLE, netns: str | None = None) -> int:
    """Delete every rule of ``owner`` (a network or container id); returns how many there were."""
    todo = firewall.removal_commands(list_ketch(table=table, netns=netns), owner, table)
    apply(todo, table=table, netns=netns)
    return len(todo)


def delete_tables(*, table: str = firewall.TABLE, netns: str | None = None) -> None:
    """Delete ketch's tables (those that exist) and everything in them."""
    apply(
        firewall.table_removal_commands(list_ketch(table=table, netns=netns), table), table=table, netns=netns
    )


class RuleIndex:
    """ketch's rules in one pair of tables, with their handles by owner, for the one process that writes them.

    :func:`add` and :func:`remove` list the whole ruleset first (one more nft run, and a parse of every other
    program's rules): fine for tests and start-up, a cost for each network and each container with published
    ports. An index built from one listing (:meth:`sync`) and kept up to date from ``nft --echo`` makes each
    change one nft run. When a change fails because the tables changed behind ketch's back (someone deleted
    them), it is retried the listing way and the index is rebuilt from a new listing.
    """

    def __init__(self, table: str = firewall.TABLE, *, netns: str | None = None) -> None:
        self.table = table
        self.netns = netns
        self._handles: dict[str, list[tuple[str, str, int]]] = {}  # owner -> (family, chain, handle)
        self._ready = False  # the tables and base chains exist, and the index is complete

    def _reindex(self) -> None:
        self._handles = {}
        for kind, obj in firewall.ketch_objects(snapshot(netns=self.netns), self.table):
            owner = firewall.owner_of(obj) if kind == "rule" else None
            if owner and owner != firewall.BASE_OWNER:
                self._handles.setdefault(owner, []).append((obj["family"], obj["chain"], int(obj["handle"])))
        self._ready = True

    def _record(self, echoed: Sequence[Command]) -> None:
        for item in echoed:
            for body in item.values():
                rule = body.get("rule") if isinstance(body, dict) else None
                owner = firewall.owner_of(rule) if isinstance(rule, dict) else None
                if rule is not None and owner and owner != firewall.BASE_OWNER and "handle" in rule:
                    self._handles.setdefault(owner, []).append(
                        (rule["family"], rule["chain"], int(rule["handle"]))
                    )

    def owners(self) -> set[str]:
        return set(self._handles)

    def sync(self, commands: Sequence[Command]) -> int:
        """:func:`sync`, and an index of what the tables hold afterwards; returns how many commands ran."""
        ran = sync(commands, table=self.table, netns=self.netns)
        self._reindex()
        return ran

    def add(self, commands: Sequence[Command]) -> None:
        """Append the rules of an owner that has none yet (a new network, a container's published ports)."""
        if not commands:
            return
        if self._ready:
            try:
                self._record(apply(commands, table=self.table, netns=self.netns, echo=True))
                return
            except SystemFailure:
                pass  # the tables may be gone: make them again below
        add(commands, table=self.table, netns=self.netns)
        self._reindex()

    def remove(self, owner: str) -> int:
        """Delete every rule of ``owner``; returns how many there were."""
        if not self._ready:
            ran = remove(owner, table=self.table, netns=self.netns)
            self._reindex()
            return ran
        handles = self._handles.pop(owner, [])
        deletes: list[Command] = [
            {"delete": {"rule": {"family": family, "table": self.table, "chain": chain, "handle": handle}}}
            for family, chain, handle in handles
        ]
        try:
            apply(deletes, table=self.table, netns=self.netns)
        except SystemFailure:
            ran = remove(owner, table=self.table, netns=self.netns)  # handles out of date: by listing
            self._reindex()
            return ran
        return len(deletes)

    def delete_tables(self) -> None:
        delete_tables(table=self.table, netns=self.netns)
        self._handles = {}
        self._ready = False
