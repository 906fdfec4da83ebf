"""The README's generated tables, made from the declarations they describe, so they cannot drift.

`scripts/readme` writes them into README.md between `<!-- begin generated: NAME -->` and
`<!-- end generated: NAME -->`; tests/test_docs.py fails when README.md and the code disagree.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from visassist.cli import add_settings
from visassist.config import declared
from visassist.errors import ERROR_CODES, ApiErrorCode


def _cell(text: str) -> str:
    return text.replace("|", r"\|")  # GitHub tables split on | even inside `code`


def error_codes_table() -> str:
    rows = ["| code | HTTP status | when |", "| --- | --- | --- |"]
    for code in ApiErrorCode:
        doc = ERROR_CODES[code]
        status = ", ".join(str(s) for s in doc.statuses) or "any other"
        rows.append(f"| `{code.value}` | {status} | {_cell(doc.meaning)} |")
    return "\n".join(rows) + "\n"


def settings_table() -> str:
    """`visassist serve`'s options and the variables they are read from; fixed settings are left out."""
    flags = {name: action.option_strings for name, action in add_settings(argparse.ArgumentParser()).items()}
    rows = ["| option | env | default | what it is for |", "| --- | --- | --- | --- |"]
    for setting in declared():
        if setting.fixed:
            continue
        option = ", ".join(f"`{flag}`" for flag in flags.get(setting.name, [])) or "—"
        doc = setting.option.doc + (f": {', '.join(f'`{c}`' for c in setting.choices)}"
                                    if setting.choices else "")
        rows.append(f"| {option} | {setting.env_words or '—'} | {_cell(setting.default_words)} | "
                    f"{_cell(doc)} |")
    return "\n".join(rows) + "\n"


TABLES: dict[str, Callable[[], str]] = {"settings": settings_table, "error-codes": error_codes_table}


def block(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- begin generated: {name} -->\n)(.*?)(<!-- end generated: {name} -->)", re.S)


def update(text: str) -> str:
    """`text` with every generated table made afresh; each must be there once."""
    for name, table in TABLES.items():
        found = list(block(name).finditer(text))
        if len(found) != 1:
            raise ValueError(f"expected one generated block {name!r}, found {len(found)}")
        text = text[:found[0].start(2)] + table() + text[found[0].end(2):]
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m visassist.docs",
                                     description="Print the README's generated tables, or update them.")
    parser.add_argument("tables", nargs="*", metavar="TABLE",
                        help=f"print these tables: {', '.join(TABLES)}")
    parser.add_argument("--update", type=Path, metavar="FILE",
                        help="rewrite the generated tables in FILE (README.md)")
    args = parser.parse_args(argv)
    if unknown := set(args.tables) - set(TABLES):
        parser.error(f"no table {', '.join(sorted(unknown))}; there are {', '.join(TABLES)}")
    for name in args.tables:
        sys.stdout.write(TABLES[name]())
    if args.update is not None:
        before = args.update.read_text()
        after = update(before)
        if after != before:
            args.update.write_text(after)
        print(f"{args.update}: {'updated' if after != before else 'up to date'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
