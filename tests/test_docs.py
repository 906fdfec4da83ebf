"""The README says what the code does: its generated tables match the declarations they come from."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from visassist import docs
from visassist.config import Settings, declared
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


def test_every_setting_says_what_it_is_for_and_how_it_is_given() -> None:
    settings = declared()
    assert {s.name for s in settings} == {f.name for f in fields(Settings)}
    flags = [s.option.flag for s in settings if s.option.flag]
    envs = [s.option.env for s in settings if s.option.env]
    assert len(flags) == len(set(flags)) and len(envs) == len(set(envs))
    assert all(env.startswith("VISASSIST_") for env in envs)
    for setting in settings:
        assert setting.option.doc, setting.name
        if not setting.fixed:
            assert setting.default_words, setting.name  # a factory's default needs words


def test_the_variables_scripts_and_the_image_set_are_settings() -> None:
    root = Path(__file__).resolve().parent.parent
    used = set()
    for path in [root / "Dockerfile", *(root / "scripts").iterdir()]:
        used |= set(re.findall(r"\bVISASSIST_[A-Z_]+", path.read_text()))
    known = {s.option.env for s in declared()} | {"VISASSIST_CHROMIUM"}  # tests/browser.py's
    assert used <= known, used - known
