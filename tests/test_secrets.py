"""Auth keys and tokens stay out of logs, exception texts and reprs; the session file is 0600."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest
import trio
import trio.testing

from cometchat_fsm import AppSettings, CometChatException, open_client, serve_reference
from cometchat_fsm.session.store import SessionStore
from cometchat_fsm.testing import memory_connector


async def test_no_secret_reaches_the_logs_or_a_repr(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock) -> None:
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG), trio.fail_after(60):
        async with serve_reference(users=("alice",)) as server:
            async with open_client("app", AppSettings(region="eu"), url=server.url, store=tmp_path,
                                   connector=memory_connector(server)) as chat:
                with pytest.raises(CometChatException) as bad:
                    await chat.login("alice", auth_key=server.auth_key + "x")
                texts += [str(bad.value), repr(bad.value)]
                await chat.login("alice", auth_key=server.auth_key)
                await trio.sleep(40)  # keep-alives, timers
                server.drop("alice")
                await trio.sleep(5)
                texts += [repr(chat), repr(chat.get_logged_in_user())]
            stored = SessionStore(tmp_path)
            session = stored.load("app")
            assert session is not None
            texts.append(repr(session))
    path = stored.path_for("app")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    token = json.loads(path.read_text())["auth_token"]
    texts += [r.getMessage() for r in caplog.records] + [r.exc_text or "" for r in caplog.records]
    assert len(caplog.records) > 5  # the logs were really captured
    for secret in (server.auth_key, token):
        assert not [t for t in texts if secret in t]
