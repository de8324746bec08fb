"""Image commands: images, pull, push, tag, rmi, inspect, history, save, load and ``image prune``.

Output follows docker 20.10's formatter (cli/command/formatter/image.go, history.go): the same columns,
headers, truncation and units, so scripts that read docker's output read ours.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any

    from ketch.cli.main import Cli
    from ketch.spec.engine_api import Filters

__all__ = ["HistoryContext", "ImageContext", "register"]

_now: Callable[[], float] = time.time  # tests pin the clock

IMAGES_TABLE = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
IMAGES_DIGESTS_TABLE = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
IMAGES_HEADERS = {
    "ID": "IMAGE ID",
    "Repository": "REPOSITORY",
    "Tag": "TAG",
    "Digest": "DIGEST",
    "CreatedSince": "CREATED",
    "CreatedAt": "CREATED AT",
    "Size": "SIZE",
    "Containers": "CONTAINERS",
    "VirtualSize": "VIRTUAL SIZE",
    "SharedSize": "SHARED SIZE",
    "UniqueSize": "UNIQUE SIZE",
}
HISTORY_TABLE = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
HISTORY_HEADERS = {
    "ID": "IMAGE",
    "CreatedSince": "CREATED",
    "CreatedAt": "CREATED AT",
    "CreatedBy": "CREATED BY",
    "Size": "SIZE",
    "Comment": "COMMENT",
}


def truncate_id(image_id: str) -> str:
    """stringid.TruncateID: drop the algorithm, keep 12 characters."""
    return image_id.partition(":")[2][:12] if ":" in image_id else image_id[:12]


def _since(created: int) -> str:
    from ketch.cli.templates import human_duration

    return human_duration(_now() - created) + " ago"


def _local_time(created: int, fmt: str) -> str:
    from datetime import datetime

    stamp = datetime.fromtimestamp(created).astimezone()
    if fmt == "rfc3339":
        offset = stamp.strftime("%z")
        zone = "Z" if offset == "+0000" else f"{offset[:3]}:{offset[3:]}"
        return stamp.strftime("%Y-%m-%dT%H:%M:%S") + zone
    return stamp.strftime("%Y-%m-%d %H:%M:%S %z %Z")  # Go's time.Time.String()


class ImageContext:
    """One row of ``ketch images`` (docker's imageContext); attributes are the template fields."""

    go_type = "*formatter.imageContext"

    def __init__(self, image: dict[str, Any], repo: str, tag: str, digest: str, trunc: bool) -> None:
        self._image = image
        self._trunc = trunc
        self.Repository = repo
        self.Tag = tag
        self.Digest = digest

    def ID(self) -> str:
        image_id = str(self._image.get("Id", ""))
        return truncate_id(image_id) if self._trunc else image_id

    def CreatedSince(self) -> str:
        return _since(int(self._image.get("Created", 0)))

    def CreatedAt(self) -> str:
        return _local_time(int(self._image.get("Created", 0)), "string")

    def Size(self) -> str:
        from ketch.cli.templates import human_size

        return human_size(float(self._image.get("Size", 0)))

    def Containers(self) -> str:
        count = int(self._image.get("Containers", -1))
        return "N/A" if count == -1 else str(count)

    def VirtualSize(self) -> str:
        from ketch.cli.templates import human_size

        return human_size(float(self._image.get("VirtualSize", self._image.get("Size", 0))))

    def SharedSize(self) -> str:
        from ketch.cli.templates import human_size

        shared = int(self._image.get("SharedSize", -1))
        return "N/A" if shared == -1 else human_size(float(shared))

    def UniqueSize(self) -> str:
        from ketch.cli.templates import human_size

        shared, size = int(self._image.get("SharedSize", -1)), int(self._image.get("Size", 0))
        return "N/A" if shared == -1 or size == -1 else human_size(float(size - shared))

    def to_json(self) -> dict[str, str]:
        # docker marshals a context as a map of its fields: keys come out sorted.
        return {name: str(getattr(self, name)()) for name in sorted(IMAGES_HEADERS) if name not in _ATTRS} | {
            name: getattr(self, name) for name in _ATTRS
        }


_ATTRS = ("Repository", "Tag", "Digest")


def _split_repo(ref: str, sep: str) -> tuple[str, str]:
    # The daemon sends familiar names ("busybox:1", "host:5000/a@sha256:..."); split at the last separator.
    index = ref.rfind(sep)
    if sep == ":" and "/" in ref[index:]:
        return ref, ""
    return (ref[:index], ref[index + 1 :]) if index > 0 else (ref, "")


def image_rows(images: Iterable[dict[str, Any]], *, digests: bool, trunc: bool) -> list[ImageContext]:
    """docker's imageFormat: one row per repository:tag (times digest when shown); dangling images as <none>."""
    rows: list[ImageContext] = []
    for image in images:
        tags = list(image.get("RepoTags") or [])
        repo_digests = list(image.get("RepoDigests") or [])
        if (tags in ([], ["<none>:<none>"])) and (repo_digests in ([], ["<none>@<none>"])):
            rows.append(ImageContext(image, "<none>", "<none>", "<none>", trunc))
            continue
        by_repo: dict[str, list[str]] = {}
        for ref in tags:
            repo, tag = _split_repo(ref, ":")
            if repo != "<none>":
                by_repo.setdefault(repo, []).append(tag)
        digests_by_repo: dict[str, list[str]] = {}
        for ref in repo_digests:
            repo, digest = _split_repo(ref, "@")
            if repo != "<none>":
                digests_by_repo.setdefault(repo, []).append(digest)
        for repo, repo_tags in by_repo.items():
            shown = digests_by_repo.pop(repo, []) if digests else []
            digests_by_repo.pop(repo, None)
            for tag in repo_tags:
                for digest in shown or ["<none>"]:
                    rows.append(ImageContext(image, repo, tag, digest, trunc))
        for repo, repo_digest_list in digests_by_repo.items():
            for digest in repo_digest_list if digests else [""]:
                rows.append(ImageContext(image, repo, "<none>", digest, trunc))
    return rows


def _filters(values: list[str]) -> Filters:
    from ketch.cli.main import CommandError
    from ketch.spec.engine_api import Filters

    fields: dict[str, set[str]] = {}
    for value in values:
        key, sep, arg = value.partition("=")
        if not sep:
            raise CommandError(f"invalid argument \"{value}\" for \"-f, --filter\" flag: bad format of filter "
                               "(expected name=value)\nSee 'ketch --help'.", 125)  # fmt: skip
        fields.setdefault(key.strip().lower(), set()).add(arg.strip())
    return Filters(fields)


# ---- images -------------------------------------------------------------------------------------------------


def images(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli.templates import render

    filters = _filters(args.filter)
    if args.reference:
        fields = {key: filters.get(key) for key in filters}
        fields["reference"] = [*fields.get("reference", []), args.reference]
        from ketch.spec.engine_api import Filters

        filters = Filters(fields)
    listed = cli.client().images(all=args.all, filters=filters)
    fmt = args.format or str(cli.config().get("imagesFormat") or "")
    if args.quiet:
        fmt = "{{.ID}}"
    elif not fmt or fmt == "table":
        fmt = IMAGES_DIGESTS_TABLE if args.digests else IMAGES_TABLE
    show_digests = args.digests or "{{.Digest}}" in fmt
    rows = image_rows(listed, digests=show_digests, trunc=not args.no_trunc)
    cli.out(render(fmt, rows, IMAGES_HEADERS))
    return 0


# ---- pull / push: docker's jsonmessage display on a non-terminal ----------------------------------------------


def display_stream(
    cli: Cli,
    messages: Iterator[dict[str, Any]],
    *,
    show: bool = True,
    write: Callable[[str], None] | None = None,
) -> None:
    """Print progress messages as ``docker`` does when stdout is not a terminal; raise the stream's error.

    ``write`` defaults to stdout; ``run`` shows the pull of a missing image on stderr."""
    from ketch.cli.main import CommandError

    write = write or cli.out

    for message in messages:
        error = message.get("errorDetail") or (
            {"message": message["error"]} if message.get("error") else None
        )
        if error:
            raise CommandError(str(error.get("message", "")))
        if "aux" in message or not show:
            continue
        detail = message.get("progressDetail") or {}
        if int(detail.get("current") or 0) > 0 or int(detail.get("total") or 0) > 0:
            continue  # progress bars are drawn only on a terminal
        line = f"{message['id']}: " if message.get("id") else ""
        if message.get("from"):
            line += f"(from {message['from']}) "
        if message.get("progress"):
            line += f"{message.get('status', '')} {message['progress']}\n"
        elif message.get("stream"):
            line += str(message["stream"])
        else:
            line += f"{message.get('status', '')}\n"
        write(line)


def pull(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.spec import reference

    ref = reference.parse(args.name, default_tag=False)
    if args.all_tags and (ref.tag or ref.digest):
        from ketch.cli.main import CommandError

        raise CommandError("tag can't be used with --all-tags/-a")
    if not args.all_tags and ref.tag is None and ref.digest is None:
        ref = reference.with_default_tag(ref)
        if not args.quiet:
            cli.out(f"Using default tag: {ref.tag}\n")
    tag = ref.digest or ref.tag or ""
    from ketch.cli.commands.registry import auth_for

    auth = auth_for(cli, ref.domain)
    messages = cli.client().pull(ref.familiar_name, tag, platform=args.platform or "", auth=auth)
    display_stream(cli, messages, show=not args.quiet)
    cli.out(f"{ref}\n")
    return 0


def push(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.spec import reference

    ref = reference.parse(args.name, default_tag=False)
    if not args.all_tags and ref.tag is None and ref.digest is None:
        ref = reference.with_default_tag(ref)
        cli.out(f"Using default tag: {ref.tag}\n")
    from ketch.cli.commands.registry import auth_for

    messages = cli.client().push(ref.familiar_name, ref.tag or "", auth=auth_for(cli, ref.domain))
    display_stream(cli, messages, show=not args.quiet)
    return 0


def tag(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.spec import reference

    target = reference.parse(args.target, default_tag=False)
    if target.digest:
        from ketch.cli.main import CommandError

        raise CommandError("refusing to create a tag with a digest reference")
    target = reference.with_default_tag(target)
    cli.client().tag(args.source, target.familiar_name, target.tag or "latest")
    return 0


def rmi(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli.main import CommandError
    from ketch.client.http import FromDaemon
    from ketch.common.errors import KetchError

    client = cli.client()
    failures: list[str] = []
    for name in args.images:
        try:
            deleted = client.remove_image(name, force=args.force, noprune=args.no_prune)
        except KetchError as exc:
            failures.append(f"Error response from daemon: {exc}" if isinstance(exc, FromDaemon) else str(exc))
            continue
        for entry in deleted:
            if entry.get("Untagged"):
                cli.out(f"Untagged: {entry['Untagged']}\n")
            if entry.get("Deleted"):
                cli.out(f"Deleted: {entry['Deleted']}\n")
    if failures:
        raise CommandError("\n".join(failures))
    return 0


# ---- inspect / history ----------------------------------------------------------------------------------------


def indented_json(values: list[Any]) -> str:
    """What docker prints for inspect without --format: the JSON array indented by four spaces."""
    import json

    text = json.dumps(values, indent=4, ensure_ascii=False)
    # Go escapes <, > and & in strings; outside strings JSON never has them, so a plain replace is exact.
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") + "\n"


def inspect(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli.main import CommandError
    from ketch.cli.templates import Template, TemplateError
    from ketch.common.errors import NotFound

    client = cli.client()
    found: list[Any] = []
    missing: list[str] = []
    kind = "image" if args.image_only or args.type == "image" else "object"
    # Like docker, a plain inspect looks for a container first, then an image.
    size = bool(getattr(args, "size", False))

    def container(name: str) -> Any:
        return client.inspect_container(name, size=size)

    lookups = [client.inspect_image] if kind == "image" else [container, client.inspect_image]
    if args.type == "container":
        lookups = [container]
    for name in args.names:
        for lookup in lookups:
            try:
                found.append(lookup(name))
                break
            except NotFound:
                continue
        else:
            missing.append(f"Error: No such {kind if args.type != 'container' else 'container'}: {name}")
    if args.format:
        try:
            template = Template(args.format.replace("\\t", "\t").replace("\\n", "\n"))
            cli.out("".join(template.execute(value) + "\n" for value in found))
        except TemplateError as exc:
            raise CommandError(f"Template parsing error: {exc}") from None
    else:
        cli.out(indented_json(found))
    if missing:
        raise CommandError("\n".join(missing))
    return 0


class HistoryContext:
    """One row of ``ketch history`` (docker's historyContext)."""

    go_type = "*formatter.historyContext"

    def __init__(self, layer: dict[str, Any], trunc: bool, human: bool) -> None:
        self._layer = layer
        self._trunc = trunc
        self._human = human

    def ID(self) -> str:
        layer_id = str(self._layer.get("Id", ""))
        return truncate_id(layer_id) if self._trunc and layer_id != "<missing>" else layer_id

    def CreatedAt(self) -> str:
        return _local_time(int(self._layer.get("Created", 0)), "rfc3339")

    def CreatedSince(self) -> str:
        return _since(int(self._layer.get("Created", 0))) if self._human else self.CreatedAt()

    def CreatedBy(self) -> str:
        from ketch.cli.templates import ellipsis

        created_by = str(self._layer.get("CreatedBy", "")).replace("\t", " ")
        return ellipsis(created_by, 45) if self._trunc else created_by

    def Size(self) -> str:
        from ketch.cli.templates import human_size

        size = int(self._layer.get("Size", 0))
        return human_size(float(size)) if self._human else str(size)

    def Comment(self) -> str:
        return str(self._layer.get("Comment", ""))

    def to_json(self) -> dict[str, str]:
        return {name: str(getattr(self, name)()) for name in sorted(HISTORY_HEADERS)}


def history(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli.main import CommandError
    from ketch.cli.templates import render

    image, human = args.image, _bool_flag(args.human)
    if human is None:
        if image is not None:
            raise CommandError(f'invalid argument "{args.human}" for "-H, --human" flag: parse error', 125)
        image, human = args.human, True
    if image is None:
        raise CommandError("\"ketch history\" requires exactly 1 argument.\nSee 'ketch history --help'.")
    layers = cli.client().history(image)
    fmt = "{{.ID}}" if args.quiet else (args.format or HISTORY_TABLE)
    if fmt == "table":
        fmt = HISTORY_TABLE
    rows = [HistoryContext(layer, not args.no_trunc, human) for layer in layers]
    cli.out(render(fmt, rows, HISTORY_HEADERS))
    return 0


# ---- save / load / prune --------------------------------------------------------------------------------------


def save(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli.main import CommandError

    if not args.output and cli.stdout.isatty():
        raise CommandError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    response = cli.client().save(args.images)
    if not args.output:
        cli.stdout.flush()
        sink = getattr(cli.stdout, "buffer", None)
        if sink is None:
            raise CommandError("cannot write a tar archive to this output; use -o")
        for chunk in response.chunks():
            sink.write(chunk)
        sink.flush()
        return 0
    # Write beside the target and rename, so a failed save leaves no half-written archive under its name.
    directory = os.path.dirname(os.path.abspath(args.output))
    temp = os.path.join(directory, f".ketch-save-{os.getpid()}.tmp")
    try:
        with open(temp, "wb") as fh:
            for chunk in response.chunks():
                fh.write(chunk)
        os.replace(temp, args.output)
    except OSError as exc:
        with _suppress():
            os.unlink(temp)
        raise CommandError(f"failed to save image: {exc.strerror or exc}: {args.output}") from None
    return 0


def _suppress() -> Any:
    import contextlib

    return contextlib.suppress(OSError)


def load(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli.main import CommandError

    if args.input:
        try:
            archive: Any = open(args.input, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise CommandError(f"open {args.input}: {exc.strerror}") from None
        size: int | None = os.fstat(archive.fileno()).st_size
    else:
        if cli.stdin.isatty():
            raise CommandError("requested load from stdin, but stdin is empty")
        archive, size = getattr(cli.stdin, "buffer", cli.stdin), None
    quiet = args.quiet or not cli.stdout.isatty()
    try:
        messages = cli.client().load(archive, quiet=quiet, size=size)
        display_stream(cli, messages)
    finally:
        if args.input:
            archive.close()
    return 0


def prune(cli: Cli, args: argparse.Namespace) -> int:
    from ketch.cli.templates import human_size

    filters = _filters(args.filter)
    if args.all:
        fields = {key: filters.get(key) for key in filters}
        fields["dangling"] = ["false"]
        from ketch.spec.engine_api import Filters

        filters = Filters(fields)
    warning = (
        "WARNING! This will remove all images without at least one container associated to them."
        if args.all
        else "WARNING! This will remove all dangling images."
    )
    if not args.force:
        cli.out(f"{warning}\nAre you sure you want to continue? [y/N] ")
        cli.stdout.flush()
        answer = cli.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            cli.out(f"Total reclaimed space: {human_size(0, 4)}\n")
            return 0
    report = cli.client().prune_images(filters)
    deleted = report.get("ImagesDeleted") or []
    if deleted:
        lines = ["Deleted Images:"]
        for entry in deleted:
            lines.append(
                f"untagged: {entry['Untagged']}" if entry.get("Untagged") else f"deleted: {entry['Deleted']}"
            )
        cli.out("\n".join(lines) + "\n\n")
    cli.out(f"Total reclaimed space: {human_size(float(report.get('SpaceReclaimed') or 0), 4)}\n")
    return 0


# ---- argument parsers -----------------------------------------------------------------------------------------


def register(sub: Any, handlers: dict[str, Callable[[Cli, argparse.Namespace], int]]) -> None:
    def add(
        parent: Any, name: str, handler: Callable[[Cli, argparse.Namespace], int], key: str, **kw: Any
    ) -> Any:
        parser = parent.add_parser(name, **kw)
        parser.set_defaults(handler=key)
        handlers[key] = handler
        return parser

    def images_flags(parser: Any) -> None:
        parser.add_argument("reference", nargs="?", default="")
        parser.add_argument("-a", "--all", action="store_true")
        parser.add_argument("--digests", action="store_true")
        parser.add_argument("-f", "--filter", action="append", default=[])
        parser.add_argument("--format", default="")
        parser.add_argument("--no-trunc", action="store_true")
        parser.add_argument("-q", "--quiet", action="store_true")

    def pull_flags(parser: Any) -> None:
        parser.add_argument("name")
        parser.add_argument("-a", "--all-tags", action="store_true")
        parser.add_argument("--disable-content-trust", action="store_true", default=True)
        parser.add_argument("--platform", default=os.environ.get("DOCKER_DEFAULT_PLATFORM", ""))
        parser.add_argument("-q", "--quiet", action="store_true")

    def push_flags(parser: Any) -> None:
        parser.add_argument("name")
        parser.add_argument("-a", "--all-tags", action="store_true")
        parser.add_argument("--disable-content-trust", action="store_true", default=True)
        parser.add_argument("-q", "--quiet", action="store_true")

    def tag_flags(parser: Any) -> None:
        parser.add_argument("source")
        parser.add_argument("target")

    def rmi_flags(parser: Any) -> None:
        parser.add_argument("images", nargs="+")
        parser.add_argument("-f", "--force", action="store_true")
        parser.add_argument("--no-prune", action="store_true")

    def inspect_flags(parser: Any, image_only: bool) -> None:
        parser.add_argument("names", nargs="+")
        parser.add_argument("-f", "--format", default="")
        if not image_only:
            parser.add_argument("--type", default="", choices=["", "image", "container"])
            parser.add_argument("-s", "--size", action="store_true")
        parser.set_defaults(image_only=image_only, type="image" if image_only else "")

    def history_flags(parser: Any) -> None:
        parser.add_argument("image", nargs="?", default=None)
        parser.add_argument("--format", default="")
        # Go's bool flag: -H, -H=false; argparse would take a following image name as its value (fixed below).
        parser.add_argument("-H", "--human", default="true", nargs="?", const="true")
        parser.add_argument("--no-trunc", action="store_true")
        parser.add_argument("-q", "--quiet", action="store_true")

    def save_flags(parser: Any) -> None:
        parser.add_argument("images", nargs="+")
        parser.add_argument("-o", "--output", default="")

    def load_flags(parser: Any) -> None:
        parser.add_argument("-i", "--input", default="")
        parser.add_argument("-q", "--quiet", action="store_true")

    def prune_flags(parser: Any) -> None:
        parser.add_argument("-a", "--all", action="store_true")
        parser.add_argument("--filter", action="append", default=[])
        parser.add_argument("-f", "--force", action="store_true")

    table: list[tuple[str, Callable[[Cli, argparse.Namespace], int], Callable[[Any], None], str]] = [
        ("images", images, images_flags, "List images"),
        ("pull", pull, pull_flags, "Pull an image or a repository from a registry"),
        ("push", push, push_flags, "Push an image or a repository to a registry"),
        ("tag", tag, tag_flags, "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"),
        ("rmi", rmi, rmi_flags, "Remove one or more images"),
        ("history", history, history_flags, "Show the history of an image"),
        (
            "save",
            save,
            save_flags,
            "Save one or more images to a tar archive (streamed to STDOUT by default)",
        ),
        ("load", load, load_flags, "Load an image from a tar archive or STDIN"),
    ]
    for name, handler, flags, help_text in table:
        flags(add(sub, name, handler, name, help=help_text))
    inspect_flags(
        add(sub, "inspect", inspect, "inspect", help="Return low-level information on objects"), False
    )

    image = sub.add_parser("image", help="Manage images")
    image.interspersed = False
    image_sub = image.add_subparsers(dest="group_command", metavar="COMMAND", required=True)
    aliases = {"images": "ls", "rmi": "rm"}
    for name, handler, flags, help_text in table:
        flags(add(image_sub, aliases.get(name, name), handler, name, help=help_text))
    inspect_flags(
        add(image_sub, "inspect", inspect, "image inspect", help="Display detailed information"), True
    )
    prune_flags(add(image_sub, "prune", prune, "image prune", help="Remove unused images"))


def _bool_flag(value: str) -> bool | None:
    """strconv.ParseBool; None when ``value`` is not a boolean."""
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None
