"""The protocol's three faces agree: the Python module, its JavaScript mirror and docs/protocol.md."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from visassist.models import Outcome
from visassist.signalling.protocol import (
    CLIENT_MESSAGE_TYPES,
    PROTOCOL_VERSION,
    SERVER_MESSAGE_TYPES,
    ErrorCode,
    ProtocolError,
    ServerMessage,
    parse_client_message,
)

ROOT = Path(__file__).resolve().parent.parent
JS = (ROOT / "static/js/lib/protocol.js").read_text()
DOC = (ROOT / "docs/protocol.md").read_text()


def js_values(block: str) -> set[str]:
    match = re.search(rf"export const {block} = Object\.freeze\(\{{(.*?)\}}\)", JS, re.S)
    assert match, f"{block} missing from protocol.js"
    return set(re.findall(r':\s*"([^"]+)"', match.group(1)))


def test_javascript_mirror_matches() -> None:
    assert f"PROTOCOL_VERSION = {PROTOCOL_VERSION};" in JS
    assert js_values("ClientMessage") == set(CLIENT_MESSAGE_TYPES)
    assert js_values("ServerMessage") == set(SERVER_MESSAGE_TYPES)
    assert js_values("ErrorCode") == {c.value for c in ErrorCode}
    outcomes = re.search(r"OUTCOMES = Object\.freeze\(\[(.*?)\]\)", JS, re.S)
    assert outcomes and set(re.findall(r'"([^"]+)"', outcomes.group(1))) == {o.value for o in Outcome}


def test_server_message_types_are_the_declared_ones() -> None:
    declared = {m.model_fields["type"].default for m in ServerMessage.__args__}  # type: ignore[attr-defined]
    assert declared == set(SERVER_MESSAGE_TYPES)


def test_document_describes_every_message_and_code() -> None:
    for name in (*CLIENT_MESSAGE_TYPES, *SERVER_MESSAGE_TYPES):
        assert f"`{name}`" in DOC, f"docs/protocol.md does not describe message {name}"
    for code in ErrorCode:
        assert f"`{code.value}`" in DOC, f"docs/protocol.md does not describe error code {code.value}"


def test_examples_in_the_document_parse() -> None:
    """Every client example in docs/protocol.md is a valid message."""
    examples = re.findall(r"```json client\n(.*?)```", DOC, re.S)
    assert len(examples) >= len(CLIENT_MESSAGE_TYPES)
    for example in examples:
        parse_client_message(example)


@pytest.mark.parametrize("text", [
    "", "null", "{}", '{"type": null}', '{"type": "hello", "protocol": "1", "token": "x"}',
    '{"type": "hello", "protocol": 1, "token": ""}', '{"type": "ice", "sdpMid": "0"}',
    '{"type": "snapshot", "request_id": "r", "annotations": {}}',
    json.dumps({"type": "snapshot", "request_id": "r",
                "annotations": [{"kind": "freehand", "points": [[0.1, 0.1]] * 2001}]}),
    json.dumps({"type": "snapshot", "request_id": "r",
                "annotations": [{"kind": "arrow", "points": [[0.1, 0.1], [0.2, 0.2]]}] * 201}),
    '{"type": "snapshot", "request_id": "r",'
    ' "annotations": [{"kind": "arrow", "points": [[NaN, 0], [0, 0]]}]}',
    '{"type": "end", "outcome": "resolved", "notes": 5}',
])
def test_bad_messages_raise_protocol_errors(text: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(text)
    assert caught.value.error_code is ErrorCode.INVALID_MESSAGE
    assert caught.value.message


@pytest.mark.parametrize(("text", "deeper"), [
    ("[" * 32 + "]" * 32, False),
    ("[" * 33 + "]" * 33, True),
    ('{"a": [' + "[1, 2], " * 100 + "[3]]}", False),  # many brackets, shallow
    (json.dumps({"text": "[" * 100}), False),  # brackets inside a string do not count
    (json.dumps({"text": '\\"' + "{" * 100}), False),  # nor after escaped quotes
    ('{"a": "x", "b": ' + "[" * 40 + "]" * 40 + "}", True),
    ("[" * 100_000, True),  # not JSON at all, and still answered without recursing
])
def test_nesting_is_measured_without_parsing(text: str, deeper: bool) -> None:
    from visassist.signalling.protocol import nests_deeper_than

    assert nests_deeper_than(text, 32) is deeper


@pytest.mark.parametrize("text", [
    "[" * 100_000 + "]" * 100_000,
    '{"type": "chat", "text": ' + "[" * 10_000 + "]" * 10_000 + "}",
    '{"type": "annotations", "shapes": ' + '[{"a": ' * 5_000 + "1" + "}]" * 5_000 + "}",
])
def test_deep_nesting_is_an_invalid_message_not_a_recursion_error(text: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(text)
    assert caught.value.error_code is ErrorCode.INVALID_MESSAGE
    assert "deeper than 32" in caught.value.message
