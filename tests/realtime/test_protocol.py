"""The frame parser: typed results for good frames, ProtocolError (never anything else) for bad ones."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webconnect.realtime import protocol
from webconnect.realtime.protocol import ProtocolError, parse_frame


def test_a_publish_frame_parses() -> None:
    frame = parse_frame('{"header": {"type": "publish", "channel": "chat.lobby", "id": "c1"}, "payload": {"a": 1}}')
    assert (frame.type, frame.channel, frame.id, frame.payload) == ("publish", "chat.lobby", "c1", {"a": 1})


def test_subscribe_with_since() -> None:
    frame = parse_frame(
        '{"header": {"type": "subscribe", "channel": "chat.x"}, "payload": {"since": {"offset": 4, "epoch": "ab"}}}'
    )
    assert frame.since == protocol.Since(4, "ab")


@pytest.mark.parametrize("name", ["chat.lobby", "user.12", "chat.room:1-a_b.c", "a.b", "ns_1.x" + "y" * 90])
def test_valid_channel_names(name: str) -> None:
    assert protocol.valid_channel(name)


@pytest.mark.parametrize(
    "name", ["", "chat", ".x", "chat.", "ch at.x", "chat.x y", "chat/x.y", "é.x", "chat." + "x" * 200, 5, None]
)
def test_invalid_channel_names(name: Any) -> None:
    assert not protocol.valid_channel(name)


def test_the_message_frame_is_completed_by_concatenation() -> None:
    prefix, suffix = protocol.message_frame_parts("chat.a", {"t": "é"}, {"user_id": 1, "name": "a"}, "json")
    frame = json.loads(protocol.complete_message(prefix, 7, "e1", suffix))
    assert frame["header"]["offset"] == 7 and frame["header"]["epoch"] == "e1"
    assert frame["header"]["channel"] == "chat.a" and frame["payload"] == {"t": "é"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def _parse(text: str) -> None:
    try:
        parse_frame(text)
    except ProtocolError as error:
        assert error.code in protocol.ERROR_CODES


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_arbitrary_text_never_raises_anything_but_protocol_error(text: str) -> None:
    _parse(text)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["header", "payload", "x"]),
        st.dictionaries(
            st.sampled_from(["type", "channel", "id", "method", "encoding", "since"]),
            st.sampled_from(sorted(protocol.CLIENT_TYPES)) | json_values,
        )
        | json_values,
    )
)
def test_fuzz_structured_frames_never_raise_anything_but_protocol_error(frame: dict[str, Any]) -> None:
    _parse(json.dumps(frame))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=100), st.integers(min_value=0, max_value=200))
def test_fuzz_mutated_valid_frames(noise: bytes, position: int) -> None:
    base = '{"header": {"type": "publish", "channel": "chat.lobby", "id": "c1"}, "payload": {"a": [1, 2.5, null]}}'
    position = min(position, len(base))
    _parse(base[:position] + noise.decode("latin-1") + base[position:])


def test_deep_nesting_is_refused_without_recursion_error() -> None:
    for depth in (33, 1000, 100_000):
        with pytest.raises(ProtocolError) as info:
            parse_frame('{"header": {"type": "ping"}, "payload": ' + "[" * depth + "]" * depth + "}")
        assert info.value.code == "bad_request"
