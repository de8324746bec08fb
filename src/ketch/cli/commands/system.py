"""``ketch version``: client and server versions, laid out as ``docker version`` prints them."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any

    from ketch.cli.main import Cli

__all__ = ["register"]


def register(sub: Any, handlers: dict[str, Callable[[Cli, argparse.Namespace], int]]) -> None:
    parser = sub.add_parser("version", help="Show the ketch version information")
    parser.add_argument("-f", "--format", default="", help="Format the output using the given Go template")
    handlers["version"] = version


def _ansic(stamp: str) -> str:
    """RFC 3339 build time as Go's time.ANSIC ("Thu May  7 21:09:36 2026"); unparsable text stays as it is."""
    from datetime import datetime

    try:
        parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00")[:19])
    except ValueError:
        return stamp
    return f"{parsed:%a %b} {parsed.day:2d} {parsed:%H:%M:%S %Y}"


def _client_info(api_version: str) -> dict[str, Any]:
    import os
    import sys

    import ketch
    from ketch.client.http import API_VERSION

    # platform.machine() and platform.python_version(), without platform's imports (re among them).
    machine = os.uname().machine
    machine = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
    return {
        "Platform": {"Name": ""},
        "Version": ketch.__version__,
        "ApiVersion": api_version,
        "DefaultAPIVersion": API_VERSION,
        "PythonVersion": sys.version.split()[0],
        "Os": "linux",
        "Arch": machine,
        "Context": "default",
    }


def version(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli.templates import render, tabwrite
    from ketch.common.errors import KetchError

    server: dict[str, Any] | None = None
    failure: KetchError | None = None
    api_version = ""
    try:
        client = cli.client()
        api_version = client.api_version
        server = client.version()
    except KetchError as exc:
        failure = exc
    if not api_version:
        from ketch.client.http import API_VERSION

        api_version = API_VERSION
    info = _client_info(api_version)
    if args.format:
        cli.out(render(args.format, [{"Client": info, "Server": server}]))
    else:
        cli.out(tabwrite(_text(info, server), minwidth=20, padding=1))
    if failure is not None:
        raise failure
    return 0


def _text(client: dict[str, Any], server: dict[str, Any] | None) -> str:
    api = client["ApiVersion"]
    if api != client["DefaultAPIVersion"]:
        api += f" (downgraded from {client['DefaultAPIVersion']})"
    lines = [
        "Client:",
        f" Version:\t{client['Version']}",
        f" API version:\t{api}",
        f" Python version:\t{client['PythonVersion']}",
        f" OS/Arch:\t{client['Os']}/{client['Arch']}",
        f" Context:\t{client['Context']}",
    ]
    if server is not None:
        name = (server.get("Platform") or {}).get("Name") or ""
        lines += ["", "Server:" + (f" {name}" if name else "")]
        for component in server.get("Components") or []:
            details: dict[str, Any] = component.get("Details") or {}
            lines.append(f" {component.get('Name', '')}:")
            if component.get("Name") == "Engine":
                minimum = details.get("MinAPIVersion", "")
                lines += [
                    f"  Version:\t{component.get('Version', '')}",
                    f"  API version:\t{details.get('ApiVersion', '')} (minimum version {minimum})",
                    f"  Go version:\t{details.get('GoVersion', '')}",
                    f"  Git commit:\t{details.get('GitCommit', '')}",
                    f"  Built:\t{_ansic(str(details.get('BuildTime', '')))}",
                    f"  OS/Arch:\t{details.get('Os', '')}/{details.get('Arch', '')}",
                    f"  Experimental:\t{details.get('Experimental', '')}",
                ]
            else:
                lines.append(f"  Version:\t{component.get('Version', '')}")
                lines += [f"  {key}:\t{details[key]}" for key in sorted(details)]
    return "\n".join(lines) + "\n"
