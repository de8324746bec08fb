"""A subset of Go's text/template for ``--format``, plus the table writer and units docker prints with.

Supported: ``{{.Field}}`` and ``{{.A.B}}``, ``{{.}}``, ``$``, string and number literals, pipelines with ``|``,
parenthesised sub-pipelines, ``{{if}}``/``{{else}}``/``{{end}}``, ``{{range}}`` and ``{{with}}``, ``{{-``/``-}}``
trimming, and the functions docker's templates have (json, join, split, lower, upper, title, pad, truncate)
with Go's builtins index, len, print, printf, println, not, and, or, eq, ne.

Values are Python data (decoded JSON, where a missing map key prints ``<no value>`` as in Go) or objects with a
``go_type`` attribute, whose public attributes are the fields; an unknown field of such an object is an error
worded like Go's ("can't evaluate field Nope in type *formatter.imageContext").
"""

from __future__ import annotations

from collections.abc import Mapping

from ketch.common.errors import InvalidArgument
from ketch.common.units import human_duration, human_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any

__all__ = [
    "MISSING",
    "Template",
    "TemplateError",
    "ellipsis",
    "human_duration",
    "human_size",
    "parse",
    "render",
    "tabwrite",
]


class TemplateError(InvalidArgument):
    """A parse or execution error, worded as Go's text/template words it."""


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<no value>"


MISSING: Any = _Missing()  # a map key that is not there (Go: the zero reflect.Value)

# ---- lexing and parsing -------------------------------------------------------------------------------------

# Compiled on first use (re, and json below, are imported only when a template needs them: ``version``
# prints through the table writer alone).
_TOKEN_PATTERN = r"""\s*(?:
      (?P<str>"(?:[^"\\]|\\.)*"|`[^`]*`)
    | (?P<num>-?\d+(?:\.\d+)?)
    | (?P<field>(?:\$[A-Za-z0-9_]*)?(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.|\$[A-Za-z0-9_]*)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<punct>[|()])
    )"""
_compiled: list[re.Pattern[str]] = []


def _token_re() -> re.Pattern[str]:
    if not _compiled:
        import re

        _compiled.append(re.compile(_TOKEN_PATTERN, re.VERBOSE))
    return _compiled[0]


class _Node:
    pos: int = 0


class _Text(_Node):
    def __init__(self, text: str) -> None:
        self.text = text


class _Operand(_Node):
    def __init__(self, kind: str, value: Any, pos: int, source: str) -> None:
        self.kind = kind  # "field", "literal", "func", "pipe"
        self.value = value
        self.pos = pos
        self.source = source


class _Pipe(_Node):
    def __init__(self, commands: list[list[_Operand]], pos: int) -> None:
        self.commands = commands
        self.pos = pos


class _Action(_Node):
    def __init__(self, pipe: _Pipe) -> None:
        self.pipe = pipe


class _Block(_Node):
    def __init__(self, keyword: str, pipe: _Pipe) -> None:
        self.keyword = keyword
        self.pipe = pipe
        self.body: list[_Node] = []
        self.otherwise: list[_Node] = []


def _line_col(text: str, pos: int) -> str:
    line = 1 + text.count("\n", 0, pos)
    col = pos - (text.rfind("\n", 0, pos) + 1)
    return f"{line}:{col}"


def _go_string_literal(source: str) -> str:
    import json

    text: str = json.loads(source)
    return text


def _quote(text: str) -> str:
    import json

    return json.dumps(text, ensure_ascii=False)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text

    def error(self, pos: int, message: str) -> TemplateError:
        line = 1 + self.text.count("\n", 0, pos)
        return TemplateError(f"template: :{line}: {message}")

    def parse(self) -> list[_Node]:
        root: list[_Node] = []
        stack: list[tuple[_Block, list[_Node]]] = []
        current = root
        text, pos = self.text, 0
        while pos < len(text):
            start = text.find("{{", pos)
            if start < 0:
                current.append(_Text(text[pos:]))
                break
            chunk = text[pos:start]
            inner_start = start + 2
            if text.startswith("- ", inner_start) or text.startswith("-\t", inner_start):
                chunk = chunk.rstrip()
                inner_start += 1
            end = text.find("}}", inner_start)
            if end < 0:
                raise self.error(start, "unclosed action")
            inner_end, after = end, end + 2
            if text[inner_end - 2 : inner_end] in (" -", "\t-"):
                inner_end -= 1
                while after < len(text) and text[after].isspace():
                    after += 1
            if chunk:
                current.append(_Text(chunk))
            pos = after
            inner = text[inner_start:inner_end]
            stripped = inner.strip()
            if stripped.startswith("/*"):
                continue  # a comment
            word = stripped.split(None, 1)[0] if stripped else ""
            if not stripped:
                raise self.error(start, "missing value for command")
            if word in ("if", "range", "with"):
                block = _Block(word, self.pipeline(inner, inner_start, skip=True))
                current.append(block)
                stack.append((block, current))
                current = block.body
            elif word == "else":
                if not stack:
                    raise self.error(start, "unexpected {{else}}")
                block = stack[-1][0]
                rest = stripped[4:].strip()
                if rest.startswith("if") and block.keyword == "if":
                    # {{else if x}} is {{else}}{{if x}}...{{end}} sharing the outer {{end}}.
                    offset = inner.index("if", inner.index("else") + 4)
                    nested = _Block("if", self.pipeline(inner[offset + 2 :], inner_start + offset + 2))
                    block.otherwise.append(nested)
                    stack[-1] = (nested, stack[-1][1])
                    current = nested.body
                else:
                    current = block.otherwise
            elif word == "end":
                if not stack:
                    raise self.error(start, "unexpected {{end}}")
                _, current = stack.pop()
            else:
                current.append(_Action(self.pipeline(inner, inner_start)))
        if stack:
            raise self.error(len(text), f"unexpected EOF in {stack[-1][0].keyword}")
        return root

    def pipeline(self, source: str, base: int, skip: bool = False) -> _Pipe:
        if skip:
            keyword_end = len(source) - len(source.lstrip())
            keyword_end += len(source.lstrip().split(None, 1)[0])
            source, base = source[keyword_end:], base + keyword_end
        tokens = self.tokens(source, base)
        pipe, index = self.parse_pipe(tokens, 0, base)
        if index != len(tokens):
            raise self.error(tokens[index][2], f"unexpected {tokens[index][1]!r} in command")
        return pipe

    def tokens(self, source: str, base: int) -> list[tuple[str, str, int]]:
        token_re = _token_re()
        out: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(source):
            if source[pos:].strip() == "":
                break
            match = token_re.match(source, pos)
            if match is None or match.end() == pos:
                bad = source[pos:].strip()[:1]
                raise self.error(base + pos, f"unexpected {bad!r} in command")
            kind = match.lastgroup
            assert kind is not None
            out.append((kind, match.group(kind), base + match.start(kind)))
            pos = match.end()
        return out

    def parse_pipe(self, tokens: list[tuple[str, str, int]], index: int, pos: int) -> tuple[_Pipe, int]:
        commands: list[list[_Operand]] = []
        command: list[_Operand] = []
        while index < len(tokens):
            kind, value, at = tokens[index]
            if kind == "punct" and value == ")":
                break
            index += 1
            if kind == "punct" and value == "|":
                if not command:
                    raise self.error(at, "missing command before |")
                commands.append(command)
                command = []
            elif kind == "punct":  # "("
                sub, index = self.parse_pipe(tokens, index, at)
                if index >= len(tokens) or tokens[index][1] != ")":
                    raise self.error(at, "unclosed left paren")
                index += 1
                command.append(_Operand("pipe", sub, at, "(...)"))
            elif kind == "str":
                literal = value[1:-1] if value.startswith("`") else _go_string_literal(value)
                command.append(_Operand("literal", literal, at, value))
            elif kind == "num":
                number: float | int = float(value) if "." in value else int(value)
                command.append(_Operand("literal", number, at, value))
            elif kind == "field":
                command.append(_Operand("field", value, at, value))
            elif value in ("true", "false"):
                command.append(_Operand("literal", value == "true", at, value))
            elif value == "nil":
                command.append(_Operand("literal", None, at, value))
            else:
                if value not in _FUNCS:
                    raise self.error(at, f'function "{value}" not defined')
                command.append(_Operand("func", value, at, value))
        if command:
            commands.append(command)
        if not commands:
            raise self.error(pos, "missing value for command")
        return _Pipe(commands, pos), index


# ---- execution ----------------------------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    go_type = getattr(value, "go_type", None)
    if isinstance(go_type, str):
        return go_type
    if isinstance(value, Mapping):
        return "map[string]interface {}"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, list | tuple):
        return "[]interface {}"
    return "interface {}"


def _field(value: Any, name: str) -> Any:
    if value is MISSING or value is None:
        return MISSING
    if isinstance(value, Mapping):
        return value.get(name, MISSING)
    if hasattr(value, "go_type") and not name.startswith("_") and hasattr(value, name):
        attr = getattr(value, name)
        return attr() if callable(attr) else attr
    raise _ExecError(f"can't evaluate field {name} in type {_type_name(value)}")


class _ExecError(Exception):
    pass


def _truth(value: Any) -> bool:
    if value is MISSING or value is None:
        return False
    if isinstance(value, bool | int | float | str | list | tuple | dict):
        return bool(value)
    return True


def go_string(value: Any) -> str:
    """``fmt.Sprint`` of a value, as text/template prints it."""
    if value is MISSING:
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{go_string(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(go_string(v) for v in value) + "]"
    return str(value)


def _go_float(value: float) -> str:
    # strconv.FormatFloat(f, 'g', -1, 64): shortest repr, exponent when it is below -4 or at least 21.
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text:
        mantissa, _, exp = text.partition("e")
        sign = "-" if exp.startswith("-") else "+"
        return f"{mantissa}e{sign}{exp.lstrip('+-').rjust(2, '0')}"
    return text


def go_json(value: Any) -> str:
    """``json.Marshal`` as Go writes it: compact, UTF-8, with <, > and & escaped."""
    import json

    text = json.dumps(_jsonable(value), separators=(",", ":"), ensure_ascii=False)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028")):
        text = text.replace(raw, escaped)
    return text.replace("\u2029", "\\u2029")


def _jsonable(value: Any) -> Any:
    if value is MISSING:
        return None
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return to_json()
    return value


def _index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(item, Mapping):
            item = item.get(key, MISSING)
        elif isinstance(item, list | tuple | str) and isinstance(key, int):
            if not 0 <= key < len(item):
                raise _ExecError(f"error calling index: index out of range: {key}")
            item = item[key]
        elif item is MISSING or item is None:
            raise _ExecError("error calling index: index of untyped nil")
        else:
            raise _ExecError(f"error calling index: can't index item of type {_type_name(item)}")
    return item


def _printf(fmt: str, *args: Any) -> str:
    out: list[str] = []
    values = iter(args)
    i = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch != "%" or i + 1 >= len(fmt):
            out.append(ch)
            i += 1
            continue
        verb = fmt[i + 1]
        i += 2
        if verb == "%":
            out.append("%")
            continue
        value = next(values, MISSING)
        if verb == "q":
            out.append(_quote(go_string(value)))
        elif verb == "d" and isinstance(value, int | float):
            out.append(str(int(value)))
        else:
            out.append(go_string(value))
    return "".join(out)


def _len(value: Any) -> int:
    if isinstance(value, Mapping | list | tuple | str):
        return len(value)
    raise _ExecError(f"error calling len: len of type {_type_name(value)}")


def _eq(a: Any, *others: Any) -> bool:
    return any(a == b for b in others)


def _truncate(value: Any, length: int) -> str:
    return go_string(value)[:length]


def _title(value: Any) -> str:
    import re

    return re.sub(r"(^|\s)(\S)", lambda m: m.group(1) + m.group(2).upper(), go_string(value))


def _pad(value: Any, before: int, after: int) -> str:
    return " " * before + go_string(value) + " " * after


_FUNCS: dict[str, Callable[..., Any]] = {
    "json": go_json,
    "join": lambda items, sep: sep.join(go_string(i) for i in (items or [])),
    "split": lambda text, sep: go_string(text).split(sep),
    "lower": lambda text: go_string(text).lower(),
    "upper": lambda text: go_string(text).upper(),
    "title": _title,
    "pad": _pad,
    "truncate": _truncate,
    "index": _index,
    "len": _len,
    "print": lambda *a: "".join(go_string(v) for v in a),
    "println": lambda *a: " ".join(go_string(v) for v in a) + "\n",
    "printf": _printf,
    "not": lambda v: not _truth(v),
    "and": lambda *a: next((v for v in a if not _truth(v)), a[-1]),
    "or": lambda *a: next((v for v in a if _truth(v)), a[-1]),
    "eq": _eq,
    "ne": lambda a, b: a != b,
}


class Template:
    """A parsed template; :meth:`execute` renders it for one value."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._nodes = _Parser(text).parse()

    def execute(self, data: Any) -> str:
        out: list[str] = []
        self._run(self._nodes, data, data, out)
        return "".join(out)

    def _fail(self, operand: _Node, source: str, message: str) -> TemplateError:
        where = _line_col(self.text, operand.pos)
        return TemplateError(f'template: :{where}: executing "" at <{source}>: {message}')

    def _run(self, nodes: Sequence[_Node], dot: Any, root: Any, out: list[str]) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                out.append(node.text)
            elif isinstance(node, _Action):
                out.append(go_string(self._pipe(node.pipe, dot, root)))
            elif isinstance(node, _Block):
                value = self._pipe(node.pipe, dot, root)
                if node.keyword == "range":
                    items: Iterable[Any]
                    if isinstance(value, Mapping):
                        items = [value[k] for k in sorted(value)]
                    elif isinstance(value, list | tuple):
                        items = value
                    elif isinstance(value, int) and not isinstance(value, bool):
                        items = range(value)
                    elif value is MISSING or value is None:
                        items = []
                    else:
                        raise self._fail(node.pipe, "range", f"range can't iterate over {go_string(value)}")
                    items = list(items)
                    for item in items:
                        self._run(node.body, item, root, out)
                    if not items:
                        self._run(node.otherwise, dot, root, out)
                elif _truth(value):
                    self._run(node.body, value if node.keyword == "with" else dot, root, out)
                else:
                    self._run(node.otherwise, dot, root, out)

    def _pipe(self, pipe: _Pipe, dot: Any, root: Any) -> Any:
        value: Any = MISSING
        for position, command in enumerate(pipe.commands):
            extra = [value] if position else []
            value = self._command(command, dot, root, extra)
        return value

    def _command(self, command: list[_Operand], dot: Any, root: Any, extra: list[Any]) -> Any:
        head = command[0]
        if head.kind == "func":
            args = [self._operand(arg, dot, root) for arg in command[1:]] + extra
            try:
                return _FUNCS[head.value](*args)
            except _ExecError as exc:
                raise self._fail(head, " ".join(op.source for op in command), str(exc)) from None
            except TypeError:
                raise self._fail(
                    head, head.source, f"wrong number of args for {head.value}: got {len(args)}"
                ) from None
        if len(command) > 1 or extra:
            method = self._method(head, dot, root) if head.kind == "field" else None
            if method is None:
                raise self._fail(head, head.source, f"can't give argument to non-function {head.source}")
            args = [self._operand(arg, dot, root) for arg in command[1:]] + extra
            try:
                return method(*args)
            except TypeError:
                name = head.source.rsplit(".", 1)[-1]
                raise self._fail(
                    head, head.source, f"wrong number of args for {name}: got {len(args)}"
                ) from None
        return self._operand(head, dot, root)

    def _method(self, operand: _Operand, dot: Any, root: Any) -> Callable[..., Any] | None:
        """``{{.Label "x"}}``: a method of a formatter object called with arguments, as Go allows."""
        path: str = operand.value
        value = root if path.startswith("$") else dot
        names = [n for n in path.lstrip("$").split(".") if n]
        if not names:
            return None
        for name in names[:-1]:
            try:
                value = _field(value, name)
            except _ExecError:
                return None
        attr = getattr(value, names[-1], None) if hasattr(value, "go_type") else None
        return attr if callable(attr) and not names[-1].startswith("_") else None

    def _operand(self, operand: _Operand, dot: Any, root: Any) -> Any:
        if operand.kind == "literal":
            return operand.value
        if operand.kind == "pipe":
            return self._pipe(operand.value, dot, root)
        if operand.kind == "func":
            return self._command([operand], dot, root, [])
        path: str = operand.value
        value = dot
        if path.startswith("$"):
            value = root
            path = path.lstrip("$")
        for name in path.split(".")[1:] if path not in ("", ".") else []:
            try:
                value = _field(value, name)
            except _ExecError as exc:
                prefix = operand.source[: operand.source.index(name) + len(name)]
                raise self._fail(operand, prefix, str(exc)) from None
        return value


def parse(text: str) -> Template:
    return Template(text)


# ---- docker's formatter: table prefix, escapes, headers -----------------------------------------------------


def _prepare(format_text: str) -> tuple[bool, str]:
    is_table = format_text.startswith("table")
    body = format_text[len("table") :] if is_table else format_text
    body = body.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    return is_table, body


def render(
    format_text: str,
    items: Sequence[Any],
    headers: Mapping[str, str] | None = None,
    default_table: str = "",
) -> str:
    """Render ``items`` with a docker ``--format`` string (``table`` prefix aligned with a tab writer).

    Parse and execution errors are raised as ``TemplateError("Template parsing error: ...")`` as docker says it.
    """
    is_table, body = _prepare(format_text)
    if is_table and not body and default_table:
        is_table, body = _prepare(default_table)
    try:
        template = Template(body)
        rows = [template.execute(item) for item in items]
    except TemplateError as exc:
        raise TemplateError(f"Template parsing error: {exc}") from None
    text = "".join(row + "\n" for row in rows)
    if not is_table:
        return text
    header = _header_line(body, headers or {})
    return tabwrite(header + "\n" + text)


def _header_line(body: str, headers: Mapping[str, str]) -> str:
    # docker executes the row template on a map of header names; a field it has no name for shows blank.
    def name(match: re.Match[str]) -> str:
        field = match.group(1)
        return headers.get(field, "")

    import re

    line = re.sub(r"\{\{-?\s*\.([A-Za-z_][A-Za-z0-9_]*)\s*-?\}\}", name, body)
    return re.sub(r"\{\{.*?\}\}", "", line)


def tabwrite(text: str, minwidth: int = 10, padding: int = 3) -> str:
    """Go's ``tabwriter.NewWriter(out, minwidth, 1, padding, ' ', 0)`` on complete lines: tab-terminated cells
    are padded to the widest cell of their column block plus ``padding``, and at least to ``minwidth``."""
    lines = [line.split("\t") for line in text.split("\n")]
    trailing = lines.pop() if lines and lines[-1] == [""] else None
    out: list[str] = []
    _format(lines, 0, len(lines), [], minwidth, padding, out)
    result = "\n".join(out)
    return result + "\n" if trailing is not None else result


def _format(
    lines: list[list[str]],
    line0: int,
    line1: int,
    widths: list[int],
    minwidth: int,
    padding: int,
    out: list[str],
) -> None:
    column = len(widths)
    this = line0
    while this < line1:
        if column >= len(lines[this]) - 1:
            this += 1
            continue
        _write(lines, line0, this, widths, out)
        line0 = this
        width = minwidth
        while this < line1 and column < len(lines[this]) - 1:
            width = max(width, len(lines[this][column]) + padding)
            this += 1
        _format(lines, line0, this, [*widths, width], minwidth, padding, out)
        line0 = this
    _write(lines, line0, line1, widths, out)


def _write(lines: list[list[str]], start: int, end: int, widths: list[int], out: list[str]) -> None:
    for cells in lines[start:end]:
        parts = [cell.ljust(widths[j]) if j < len(widths) else cell for j, cell in enumerate(cells)]
        out.append("".join(parts))


# ---- go-units and docker's string helpers --------------------------------------------------------------------


def ellipsis(text: str, width: int) -> str:
    """docker's ``formatter.Ellipsis`` for single-width text: cut to ``width`` characters ending in '…'."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    if width == 1:
        return text[0]
    return text[: width - 1] + "…"
