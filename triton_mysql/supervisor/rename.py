"""Move this node between service names: rewrite the name in its config file, then SIGHUP.

The cluster hooks advertise a node as `<SERVICE_NAME>` (replica) or
`<SERVICE_NAME>-primary` (primary) by editing the service `name` in the
node's own containerbuddy config and signalling the supervisor, which
deregisters the old name and registers the new one (SPEC §4).

`set_service_name` edits the file as text, not by re-serialising it: only the
one JSON string that holds the name changes, so formatting, key order and
templates elsewhere (`{{ .VAR }}` inside strings) survive.  Go templates are
not JSON, so before parsing each `{{ … }}` inside a JSON string is swapped
for a placeholder and swapped back afterwards.  A template *outside* a string
(`"port": {{ .PORT }}`) makes the raw file invalid JSON; that file is
rendered first and the rendered text is written back (logged).  The write is
atomic: a temporary file in the same directory, fsync, rename.
"""
from __future__ import annotations

import json
import logging
import os
import re
import signal
import tempfile
from dataclasses import dataclass, field
from typing import Any, Mapping

from .template import TemplateError, render, scan

log = logging.getLogger("containerbuddy")


def set_service_name(config_source: str, current_names: set[str], new_name: str,
                     env: Mapping[str, str] | None = None) -> bool:
    """Rename the service whose (rendered) name is in `current_names` to `new_name`.

    `config_source` is what the supervisor got (`CONTAINERBUDDY`): `file:///path`
    or a path.  True when the file was rewritten; False when that service
    already has `new_name`, when no service has one of `current_names`, or when
    the config is literal JSON (nothing to rewrite) – each with a log line.
    Raises OSError when the file cannot be read or written, ValueError when it
    is not a config this function can parse.
    """
    env = os.environ if env is None else env
    if config_source.strip().startswith("{"):
        log.warning("cannot rename service to %s: the supervisor config is literal JSON, not a file", new_name)
        return False
    path = config_source.strip()
    if path.startswith("file://"):
        path = path[len("file://"):]
    with open(path, encoding="utf-8") as f:
        text = f.read()
    work, templates, rendered_whole = _protect_templates(text, env)
    if rendered_whole:
        log.info("%s has templates outside JSON strings; writing it back rendered", path)
    root = _Parser(work).parse()
    target = _find_service(root, current_names, templates, env)
    if target is None:
        log.warning("cannot rename service to %s: no service in %s is named %s", new_name, path,
                    " or ".join(sorted(current_names)))
        return False
    current = _restore(target.value, templates)
    if _render_name(current, env) == new_name:
        log.debug("service in %s is already named %s", path, new_name)
        return False
    new_work = work[:target.start] + json.dumps(new_name) + work[target.end:]
    _write_atomic(path, _restore(new_work, templates))
    log.info("renamed service %s -> %s in %s", _render_name(current, env), new_name, path)
    return True


def notify(pid: int) -> None:
    """Ask the supervisor (CONTAINERBUDDY_PID) to re-read its config: SIGHUP."""
    os.kill(pid, signal.SIGHUP)


# --------------------------------------------------------------------------
# Templates in and out

_MARK = "\u2060tpl{}\u2060"  # word joiner: never in a config, fine inside a JSON string
_MARK_RE = re.compile("\u2060tpl(\\d+)\u2060")


def _protect_templates(text: str, env: Mapping[str, str]) -> tuple[str, list[str], bool]:
    """(text with in-string templates as placeholders, the templates, whether the whole file was rendered)."""
    try:
        actions = scan(text)
    except TemplateError as exc:
        raise ValueError(f"config template: {exc}") from None
    if not actions:
        return text, [], False
    out: list[str] = []
    templates: list[str] = []
    pos = 0
    in_string = False
    for action in actions:
        segment = text[pos:action.start]
        in_string = _string_state_after(segment, in_string)
        if not in_string:
            try:
                return render(text, env), [], True
            except TemplateError as exc:
                raise ValueError(f"config template: {exc}") from None
        out.append(segment)
        out.append(_MARK.format(len(templates)))
        templates.append(text[action.start:action.end])
        pos = action.end
    out.append(text[pos:])
    return "".join(out), templates, False


def _string_state_after(segment: str, in_string: bool) -> bool:
    """Whether a JSON string is open at the end of `segment`, given the state at its start."""
    i = 0
    while i < len(segment):
        ch = segment[i]
        if in_string and ch == "\\":
            i += 2
            continue
        if ch == '"':
            in_string = not in_string
        i += 1
    return in_string


def _restore(text: str, templates: list[str]) -> str:
    return _MARK_RE.sub(lambda m: templates[int(m.group(1))], text) if templates else text


def _render_name(raw: str, env: Mapping[str, str]) -> str:
    try:
        return render(raw, env)
    except TemplateError:
        return raw


# --------------------------------------------------------------------------
# A JSON parser that remembers where each value is

@dataclass
class _Node:
    start: int
    end: int
    value: Any = None
    """For strings: the raw JSON text of the string, decoded.  Objects: dict key -> _Node.  Arrays: list."""
    items: Any = field(default=None)


class _Parser:
    _NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def parse(self) -> _Node:
        try:
            json.loads(self.text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"config is not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None
        node = self._value()
        return node

    def _skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
            self.pos += 1

    def _value(self) -> _Node:
        self._skip()
        ch = self.text[self.pos]
        start = self.pos
        if ch == "{":
            self.pos += 1
            items: dict[str, _Node] = {}
            self._skip()
            if self.text[self.pos] == "}":
                self.pos += 1
                return _Node(start, self.pos, items=items)
            while True:
                key = self._value()
                self._skip()
                self.pos += 1  # ':'
                items[key.value] = self._value()
                self._skip()
                sep = self.text[self.pos]
                self.pos += 1
                if sep == "}":
                    return _Node(start, self.pos, items=items)
        if ch == "[":
            self.pos += 1
            elements: list[_Node] = []
            self._skip()
            if self.text[self.pos] == "]":
                self.pos += 1
                return _Node(start, self.pos, items=elements)
            while True:
                elements.append(self._value())
                self._skip()
                sep = self.text[self.pos]
                self.pos += 1
                if sep == "]":
                    return _Node(start, self.pos, items=elements)
        if ch == '"':
            value, self.pos = json.decoder.scanstring(self.text, self.pos + 1)
            return _Node(start, self.pos, value=value)
        for word, value in (("true", True), ("false", False), ("null", None)):
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                return _Node(start, self.pos, value=value)
        match = self._NUMBER.match(self.text, self.pos)
        assert match is not None
        self.pos = match.end()
        return _Node(start, self.pos, value=json.loads(match.group()))


def _find_service(root: _Node, names: set[str], templates: list[str], env: Mapping[str, str]) -> _Node | None:
    """The `name` node of the first service whose rendered name is in `names`."""
    if not isinstance(root.items, dict):
        return None
    services = root.items.get("services")
    if services is None or not isinstance(services.items, list):
        return None
    for service in services.items:
        if not isinstance(service.items, dict):
            continue
        name = service.items.get("name")
        if name is None or not isinstance(name.value, str):
            continue
        if _render_name(_restore(name.value, templates), env) in names:
            return name
    return None


def _write_atomic(path: str, text: str) -> None:
    """Replace `path` with `text` so that a reader sees the old or the new file, never half of one."""
    directory = os.path.dirname(os.path.abspath(path))
    st = os.stat(path)
    fd, tmp = tempfile.mkstemp(prefix=".containerbuddy-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, st.st_mode & 0o7777)
        try:
            os.chown(tmp, st.st_uid, st.st_gid)
        except PermissionError:
            pass
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
