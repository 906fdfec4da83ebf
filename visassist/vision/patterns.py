"""What counts as a serial number, a model, a MAC address or an IMEI in the text read off a label.

A pattern is a name and a regular expression whose first group is the value. The defaults below look
for the words labels print before a value ("S/N", "Serial No.", "Model", "MAC", "IMEI"); an operator
adds or replaces patterns with `--field-pattern name=regex` (visassist/config.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldPattern:
    name: str  # serial_number, model, mac_address, imei, or the operator's own
    regex: str  # matched against each line of text, upper-cased; group 1 is the value

    def compiled(self) -> re.Pattern[str]:
        return re.compile(self.regex)


def parse_field_pattern(spec: str) -> FieldPattern:
    """`name=regex` from the command line; the regex must compile and have a group."""
    name, sep, regex = spec.partition("=")
    if not sep or not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", name):
        raise ValueError(f"not a field pattern: {spec!r} (want name=regex, name in lower_snake_case)")
    try:
        groups = re.compile(regex).groups
    except re.error as exc:
        raise ValueError(f"field pattern {name}: {exc}") from None
    if groups < 1:
        raise ValueError(f"field pattern {name}: the regex needs a group around the value")
    return FieldPattern(name, regex)


# At least one separator between the word and the value, so "SNOWFLAKE" is not a serial number.
_SEP = r"(?:\s*[.:#=]+\s*|\s+)"
DEFAULT_PATTERNS: tuple[FieldPattern, ...] = (
    FieldPattern("serial_number",
                 rf"\b(?:S/?N|SER(?:IAL)?(?:\s*(?:NO|NUMBER|#))?){_SEP}([A-Z0-9][A-Z0-9/-]{{3,}})"),
    FieldPattern("model",
                 rf"\b(?:MODEL|MOD|MDL|M/N|TYPE)(?:\s*(?:NO|NUMBER|#))?{_SEP}([A-Z0-9][A-Z0-9./-]{{1,}})"),
    FieldPattern("mac_address", r"\b((?:[0-9A-F]{2}[:-]){5}[0-9A-F]{2})\b"),
    FieldPattern("imei", r"\b(\d{15})\b"),
)


def luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


# A match is kept only if its value passes its check (an IMEI's last digit is a Luhn check digit).
CHECKS: dict[str, Callable[[str], bool]] = {"imei": luhn_ok}


@dataclass(frozen=True)
class Match:
    name: str
    value: str
    line: int  # index of the line it came from


def find_fields(lines: Iterable[str], patterns: Iterable[FieldPattern]) -> list[Match]:
    """Every value a pattern finds, once per (name, value), in the order the lines came."""
    compiled = [(p.name, p.compiled()) for p in patterns]
    found: list[Match] = []
    seen: set[tuple[str, str]] = set()
    for index, line in enumerate(lines):
        text = line.upper()
        for name, regex in compiled:
            for match in regex.finditer(text):
                value = match.group(1)
                check = CHECKS.get(name)
                if (name, value) in seen or (check is not None and not check(value)):
                    continue
                seen.add((name, value))
                found.append(Match(name, value, index))
    return found
