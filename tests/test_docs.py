"""The README's configuration table is the config module's table."""
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
