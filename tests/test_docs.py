"""The README says what the code does: its generated tables match the declarations they come from."""

from __future__ import annotations

import re
from pathlib import Path

from visassist import docs
from visassist.errors import ERROR_CODES, ApiErrorCode

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _generated(name: str) -> str:
    found = docs.block(name).search(README)
    assert found, f"README.md has no generated block {name!r}"
    return found[2]


def test_the_readme_tables_are_what_the_code_generates() -> None:
    assert docs.update(README) == README, "README.md is out of date: run scripts/readme"


def test_every_api_error_code_is_documented() -> None:
    assert set(ERROR_CODES) == set(ApiErrorCode), "every ApiErrorCode needs a line in ERROR_CODES"
    listed = re.findall(r"^\| `(\w+)` \|", _generated("error-codes"), re.MULTILINE)
    assert sorted(listed) == sorted(code.value for code in ApiErrorCode)
