"""The command line: every command and option is documented, keys are shown once and kept hashed."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from visassist.cli import build_parser

VISASSIST = str(Path(sys.executable).with_name("visassist"))
README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VISASSIST, *args], capture_output=True, text=True, timeout=60)


def test_help_documents_every_command() -> None:
    top = run("--help")
    assert top.returncode == 0
    for command in ("serve", "api-key"):
        assert command in top.stdout
    serve = run("serve", "--help").stdout
    for option in ("--host", "--port", "--data-dir", "--public-url", "--ice-address", "--ice-server",
                   "--log-level"):
        assert option in serve
    assert "--name" in run("api-key", "create", "--help").stdout


def test_every_serve_option_is_in_the_readme() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    serve = subparsers.choices["serve"]  # type: ignore[attr-defined]
    for action in serve._actions:
        for option in action.option_strings:
            if option.startswith("--") and option != "--help":
                assert f"`{option}" in README, f"README does not document {option}"


def test_api_key_is_printed_once_and_stored_hashed(tmp_path: Path) -> None:
    created = run("api-key", "create", "--name", "zendesk", "--data-dir", str(tmp_path))
    assert created.returncode == 0
    key = created.stdout.strip()
    assert key.startswith("vak_") and len(key) > 40
    database = sqlite3.connect(tmp_path / "visassist.sqlite3")
    stored = database.execute("SELECT name, key_digest FROM api_keys").fetchall()
    assert stored[0][0] == "zendesk" and key not in stored[0][1]
    listing = run("api-key", "list", "--data-dir", str(tmp_path)).stdout
    assert "zendesk" in listing and key not in listing


def test_bad_option_is_a_clear_error() -> None:
    result = run("serve", "--ice-server", "http://nope")
    assert result.returncode == 2
    assert "STUN/TURN" in result.stderr and "Traceback" not in result.stderr
