"""``ketch login`` and ``ketch logout``: check credentials through the daemon's /auth, keep them in config.json."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any

    from ketch.cli.main import Cli

__all__ = ["auth_for", "register"]

PLAINTEXT_WARNING = (
    "WARNING! Your password will be stored unencrypted in {path}.\n"
    "Configure a credential helper to remove this warning. See\n"
    "https://docs.docker.com/engine/reference/commandline/login/#credentials-store\n\n"
)


def register(sub: Any, handlers: dict[str, Callable[[Cli, argparse.Namespace], int]]) -> None:
    parser = sub.add_parser("login", help="Log in to a Docker registry")
    parser.add_argument("server", nargs="?", default="")
    parser.add_argument("-u", "--username", default="")
    parser.add_argument("-p", "--password", default="")
    parser.add_argument("--password-stdin", action="store_true")
    handlers["login"] = login
    parser = sub.add_parser("logout", help="Log out from a Docker registry")
    parser.add_argument("server", nargs="?", default="")
    handlers["logout"] = logout


def auth_for(cli: Cli, domain: str) -> dict[str, str] | None:
    """The saved credentials for a registry domain, for X-Registry-Auth; None when there are none."""
    from ketch.client.config import get_credentials, server_key
    from ketch.common.errors import KetchError

    try:
        return get_credentials(cli.config_dir, server_key(domain))
    except KetchError:
        return None


def login(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli.main import CommandError
    from ketch.client.config import DEFAULT_SERVER, store_credentials

    server = args.server or DEFAULT_SERVER
    if args.password:
        cli.err("WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n")
        if args.password_stdin:
            raise CommandError("--password and --password-stdin are mutually exclusive")
    password = args.password
    if args.password_stdin:
        if not args.username:
            raise CommandError("Must provide --username with --password-stdin")
        password = cli.stdin.read().rstrip("\r\n")
    username = args.username
    if not username:
        cli.out("Username: ")
        cli.stdout.flush()
        username = cli.stdin.readline().strip()
    if not username:
        raise CommandError("Error: Non-null Username Required")
    if not password:
        cli.out("Password: ")
        cli.stdout.flush()
        password = cli.stdin.readline().rstrip("\r\n")
    if not password:
        raise CommandError("Error: Password Required")
    response = cli.client().auth({"username": username, "password": password, "serveraddress": server})
    token = str(response.get("IdentityToken") or "")
    written = store_credentials(cli.config_dir, server, username, password, token)
    if written is not None and not token:
        cli.err(PLAINTEXT_WARNING.format(path=written))
    cli.out(f"{response.get('Status') or 'Login Succeeded'}\n")
    return 0


def logout(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.client.config import DEFAULT_SERVER, erase_credentials, hostname, logged_in

    server = args.server or DEFAULT_SERVER
    keys = [server]
    shown = server
    if args.server:
        shown = hostname(server)
        keys += [shown, f"http://{shown}", f"https://{shown}"]
    if not logged_in(cli.config_dir, keys):
        cli.out(f"Not logged in to {shown}\n")
        return 0
    cli.out(f"Removing login credentials for {shown}\n")
    if not erase_credentials(cli.config_dir, keys):
        cli.err(f"WARNING: could not erase credentials for {shown}\n")
    return 0
