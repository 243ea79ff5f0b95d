"""The wire protocol (cometchat_fsm.wire): every frame round-trips, and any input decodes to a
frame or to the typed ProtocolError with a documented close code, never another exception."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cometchat_fsm.wire import frames as f
from cometchat_fsm.wire.codec import MAX_FETCH, MAX_FRAME_BYTES, ProtocolError, decode, encode

uids = st.from_regex(r"[A-Za-z0-9_.\-]{1,100}", fullmatch=True)
muids = st.from_regex(r"[A-Za-z0-9_.:\-]{1,100}", fullmatch=True)
texts = st.text(max_size=40)  # any str, lone surrogates too: they travel as escapes
ids = st.integers(min_value=-(2**70), max_value=2**70)
times = st.floats(allow_nan=False, allow_infinity=False)
messages = st.builds(f.Message, ids, texts, texts, texts, times, st.none() | texts)

CLIENT_STRATEGIES: dict[type, st.SearchStrategy[Any]] = {
    f.Login: st.builds(f.Login, texts, texts),
    f.TokenLogin: st.builds(f.TokenLogin, texts),
    f.Auth: st.builds(f.Auth, texts, texts, st.none() | ids),
    f.KeepAlive: st.just(f.KeepAlive()), f.Ping: st.just(f.Ping()), f.Pause: st.just(f.Pause()),
    f.SendMessage: st.builds(f.SendMessage, texts, texts, ids, st.none() | muids),
    f.Resume: st.builds(f.Resume, ids),
    f.Fetch: st.builds(f.Fetch, ids, st.integers(1, MAX_FETCH), ids, st.booleans()),
}
SERVER_STRATEGIES: dict[type, st.SearchStrategy[Any]] = {
    f.LoginOk: st.builds(f.LoginOk, uids, texts, st.none() | ids),
    f.ErrorAnswer: st.builds(f.ErrorAnswer, st.none() | texts, st.none() | texts, st.none() | ids),
    f.AuthOk: st.builds(f.AuthOk, st.none() | texts, st.none() | times, st.none() | ids, st.booleans(),
                        st.none() | st.builds(f.Gap, ids, ids)),
    f.AuthRejected: st.builds(f.AuthRejected, st.none() | texts, st.none() | texts),
    f.Pong: st.just(f.Pong()),
    f.Delivery: st.builds(f.Delivery, messages),
    f.Throttle: st.builds(f.Throttle, st.booleans()),
    f.Sent: st.builds(f.Sent, st.none() | ids, ids, times, st.none() | texts, st.booleans()),
    f.Resumed: st.builds(f.Resumed, ids),
    f.History: st.builds(f.History, st.none() | ids, st.lists(messages, max_size=3).map(tuple),
                         st.booleans()),
}
CLIENT_FRAMES: st.SearchStrategy[f.Frame] = st.one_of(*CLIENT_STRATEGIES.values())
SERVER_FRAMES: st.SearchStrategy[f.Frame] = st.one_of(*SERVER_STRATEGIES.values())
EVERY_FRAME_CLASS = {cls for cls in vars(f).values()
                     if isinstance(cls, type) and isinstance(getattr(cls, "type", None), str)}


@settings(max_examples=300)
@given(CLIENT_FRAMES)
def test_every_client_frame_round_trips(frame: f.Frame) -> None:
    assert decode(encode(frame), f.Origin.CLIENT) == frame


@settings(max_examples=300)
@given(SERVER_FRAMES)
def test_every_server_frame_round_trips(frame: f.Frame) -> None:
    assert decode(encode(frame), f.Origin.SERVER) == frame


def test_the_strategies_cover_every_frame_type() -> None:
    """Each frame class of frames.py is generated above (a new frame needs a strategy)."""
    assert set(CLIENT_STRATEGIES) | set(SERVER_STRATEGIES) == EVERY_FRAME_CLASS
    assert {cls.type for cls in CLIENT_STRATEGIES} & {cls.type for cls in SERVER_STRATEGIES} == {"message"}


def _decoded_or_typed(data: str | bytes) -> None:
    for origin in f.Origin:
        try:
            frame = decode(data, origin)
        except ProtocolError as exc:
            assert exc.code in (1007, 1008, 1009) and str(exc)
        else:
            assert decode(encode(frame), origin) == frame  # what decodes also encodes


@settings(max_examples=300)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_any_bytes_or_text_give_a_frame_or_the_typed_error(data: str | bytes) -> None:
    _decoded_or_typed(data)
    if isinstance(data, bytes):
        _decoded_or_typed(data.decode("utf-8", "surrogateescape"))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8)
FIELD_NAMES = ["uid", "auth_key", "auth_token", "last_id", "to", "text", "ref", "muid", "after_id",
               "limit", "sent", "code", "message", "server_time", "resumed", "gap", "id", "sender",
               "receiver", "sent_at", "active", "resent", "messages", "more", "after", "through"]
TYPES = [*sorted({cls.type for cls in EVERY_FRAME_CLASS}), "shout"]


@settings(max_examples=500)
@given(st.sampled_from(TYPES), st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=7))
def test_frames_with_any_fields_give_a_frame_or_the_typed_error(kind: str, fields: dict[str, Any]) -> None:
    """Near-frames (a known type, fields of any JSON shape, 1e999 too) break nothing else."""
    _decoded_or_typed(json.dumps({"type": kind, **fields}))


@pytest.mark.parametrize(("data", "code", "named"), [
    (b'{"type": "pong"}', 1008, "binary"),
    ('{"type": "pong"', 1007, "JSON"),
    ('{"type": "pong", "x": NaN}', 1007, "JSON"),
    ("[" * 50_000, 1007, "JSON"),
    ('["pong"]', 1008, "object"),
    ('{"type": 7}', 1008, "type"),
    ('{"type": "shout"}', 1008, "shout"),
    ('{"type": "message", "id": 1}', 1008, "'sender'"),
    ('{"type": "sent", "ref": 1, "id": 2, "sent_at": 1e999}', 1008, "'sent_at'"),
    ('{"type": "history", "ref": 1, "messages": [5]}', 1008, "object"),
    ('{"type": "pong", "pad": "' + "é" * 40_000 + '"}', 1009, str(MAX_FRAME_BYTES)),
])
def test_each_breach_has_its_close_code(data: str | bytes, code: int, named: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(data, f.Origin.SERVER)
    assert info.value.code == code and named in str(info.value)


def test_the_same_type_is_another_frame_from_the_other_side() -> None:
    delivery = f.Delivery(f.Message(1, "a", "b", "hi", 1.5, None))
    assert decode(encode(delivery), f.Origin.SERVER) == delivery
    with pytest.raises(ProtocolError, match="'to'"):  # a client's `message` frame has `to`
        decode(encode(delivery), f.Origin.CLIENT)
    with pytest.raises(ProtocolError, match="'pong'"):
        decode(encode(f.Pong()), f.Origin.CLIENT)


def test_sloppy_fields_a_receiver_tolerates() -> None:
    """docs/protocol.md's tolerated sloppiness: an error's code, a sent's ref, auth_ok extras."""
    assert decode('{"type": "error", "code": 7, "message": ["no"]}', f.Origin.SERVER) == \
        f.ErrorAnswer(None, None, None)
    assert decode('{"type": "sent", "ref": "1", "id": 2, "sent_at": 0}', f.Origin.SERVER) == \
        f.Sent(None, 2, 0.0)
    ok = decode('{"type": "auth_ok"}', f.Origin.SERVER)
    assert ok == f.AuthOk(None, None, None, False, None)


def test_encoding_refuses_what_json_cannot_carry() -> None:
    with pytest.raises(ValueError):
        encode(f.Sent(1, 2, math.inf))
