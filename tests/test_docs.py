"""The README's configuration table is the config module's table, and every test the docs name exists."""
from __future__ import annotations

import re
from pathlib import Path

from triton_mysql.config import VARIABLES

README = Path(__file__).resolve().parent.parent / "README.md"


def _documented() -> dict[str, str]:
    text = README.read_text()
    block = text.split("<!-- config-table:start -->", 1)[1].split("<!-- config-table:end -->", 1)[0]
    rows = {}
    for line in block.splitlines():
        match = re.match(r"^\| `([A-Z0-9_]+)` \| (.*?) \| (.*) \|$", line)
        if match:
            rows[match.group(1)] = match.group(2).strip("` ")
    return rows


def _default(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_readme_lists_every_variable_with_its_default():
    documented = _documented()
    assert set(documented) == {v.name for v in VARIABLES}, "README table and config.VARIABLES differ"
    for var in VARIABLES:
        assert documented[var.name] == _default(var.default), f"{var.name}: README says {documented[var.name]!r}"


TESTS = Path(__file__).resolve().parent
NAMED = re.compile(r"`(test_\w+\.py)?::(test_\w+)(?:\[[^\]]*\])?`")


def named_tests(text: str) -> list[tuple[str, str]]:
    """Every `file.py::test_name` the text names; a bare `::test_name` continues the file named before it."""
    found, current = [], None
    for match in NAMED.finditer(text):
        current = match.group(1) or current
        assert current, f"`::{match.group(2)}` names no file before it"
        found.append((current, match.group(2)))
    return found


def test_every_test_the_docs_name_exists():
    """README and ARCHITECTURE name the test behind each safety claim: a renamed or deleted test must not
    leave a claim pointing at nothing."""
    named = named_tests(README.read_text()) + named_tests((README.parent / "ARCHITECTURE.md").read_text())
    assert len(named) > 20
    missing = [f"{file}::{name}" for file, name in named
               if not re.search(rf"^(async )?def {name}\(", (TESTS / file).read_text(), flags=re.M)]
    assert missing == []
