"""The subset of Go templates that Containerbuddy configs use.

Containerbuddy/ContainerPilot 2 render the whole config file with Go's
`text/template` (the environment as the data map, `missingkey=zero`) before
parsing it as JSON.  Configs in the wild use two forms, which is all this
module supports:

    {{ .VAR }}                      the variable, or "" when unset
    {{ .VAR | default "x" }}        the variable, or "x" when unset or empty
    {{ default "x" .VAR }}          the same, as a function call

plus Go's whitespace trim markers (`{{-`, `-}}`) and comments (`{{/* */}}`).
Anything else is a `TemplateError` (a config error, exit 2), never a silent
pass-through: a template the supervisor does not understand must not end up
as a service name.

`scan()` is public because `rename.py` needs to know where the templates are
(inside or outside JSON strings) to rewrite a config without losing them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping


class TemplateError(ValueError):
    """A template the supervisor cannot render."""


@dataclass(frozen=True)
class Action:
    """One `{{ … }}` in a text: its span (braces included) and its inner body."""

    start: int
    end: int
    body: str
    trim_left: bool
    trim_right: bool


def scan(text: str) -> list[Action]:
    """Every action in `text`, in order.  Quoted strings inside an action may contain `}}`."""
    actions: list[Action] = []
    pos = 0
    while True:
        start = text.find("{{", pos)
        if start < 0:
            return actions
        end = _action_end(text, start + 2)
        inner = text[start + 2:end - 2]
        trim_left = inner.startswith("- ") or inner == "-"
        trim_right = inner.endswith(" -")
        body = inner[2 if trim_left else 0:len(inner) - (2 if trim_right else 0)]
        actions.append(Action(start, end, body.strip(), trim_left, trim_right))
        pos = end


def _action_end(text: str, pos: int) -> int:
    """Index just past the `}}` closing the action whose body starts at `pos`."""
    quote = ""
    i = pos
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\" and quote == '"':
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "\"`":
            quote = ch
        elif text.startswith("}}", i):
            return i + 2
        elif ch == "\n" and not text[pos:i].lstrip().startswith("/*"):
            # Go forbids newlines inside actions (comments excepted); an
            # unclosed `{{` would otherwise swallow the rest of the file.
            raise TemplateError(f"unclosed template action starting {text[pos - 2:i].strip()!r}")
        i += 1
    raise TemplateError(f"unclosed template action starting {text[pos - 2:pos + 30].strip()!r}")


def render(text: str, env: Mapping[str, str]) -> str:
    """`text` with every action replaced by its value from `env`."""
    out: list[str] = []
    pos = 0
    for action in scan(text):
        chunk = text[pos:action.start]
        if action.trim_left:
            chunk = chunk.rstrip()
        out.append(chunk)
        out.append(evaluate(action.body, env))
        pos = action.end
        if action.trim_right:
            while pos < len(text) and text[pos].isspace():
                pos += 1
    out.append(text[pos:])
    return "".join(out)


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<field>\.[A-Za-z_][A-Za-z0-9_]*)
      | (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<raw>`[^`]*`)
      | (?P<pipe>\|)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)


def evaluate(body: str, env: Mapping[str, str]) -> str:
    """The value of one action body (the text between the braces, trimmed)."""
    if body.startswith("/*") and body.endswith("*/"):
        return ""
    commands: list[list[tuple[str, str]]] = [[]]
    pos = 0
    while pos < len(body):
        match = _TOKEN.match(body, pos)
        if not match or match.end() == pos:
            raise TemplateError(f"unsupported template {{{{ {body} }}}}")
        pos = match.end()
        kind = match.lastgroup or ""
        if kind == "pipe":
            commands.append([])
        else:
            commands[-1].append((kind, match.group(kind)))
        if pos < len(body) and body[pos:].strip() == "":
            break
    value: str | None = None
    for command in commands:
        value = _run(command, value, env, body)
    return value or ""


def _run(command: list[tuple[str, str]], piped: str | None, env: Mapping[str, str], body: str) -> str:
    """One pipeline stage: an operand, or `default` with its arguments (+ the piped value)."""
    if not command:
        raise TemplateError(f"empty pipeline stage in {{{{ {body} }}}}")
    kind, token = command[0]
    if kind != "ident":
        if len(command) != 1 or piped is not None:
            raise TemplateError(f"unsupported template {{{{ {body} }}}}")
        return _operand(kind, token, env)
    if token != "default":
        raise TemplateError(f"unsupported template function {token!r} in {{{{ {body} }}}} (only `default`)")
    args = [_operand(k, t, env) for k, t in command[1:] if k != "ident"]
    if len(args) != len(command) - 1:
        raise TemplateError(f"unsupported template {{{{ {body} }}}}")
    if piped is not None:
        args.append(piped)
    if len(args) != 2:
        raise TemplateError(f"`default` takes a default and a value in {{{{ {body} }}}}")
    fallback, value = args
    return value if value else fallback


def _operand(kind: str, token: str, env: Mapping[str, str]) -> str:
    if kind == "field":
        return env.get(token[1:], "")
    if kind == "raw":
        return token[1:-1]
    return _unquote(token)


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "0": "\0"}


def _unquote(token: str) -> str:
    """A Go interpreted string literal (the common escapes) without its quotes."""
    out: list[str] = []
    i, inner = 0, token[1:-1]
    while i < len(inner):
        ch = inner[i]
        if ch == "\\":
            nxt = inner[i + 1] if i + 1 < len(inner) else ""
            if nxt not in _ESCAPES:
                raise TemplateError(f"unsupported escape \\{nxt} in {token}")
            out.append(_ESCAPES[nxt])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)
