"""The reference server's message history (rule D13, docs/rules.md): users, tokens and messages in SQLite.

A reconnecting client names the last message it delivered; the server replays what followed
from here. Two windows, both per user:

- the replay window (default 2 minutes and 10,000 messages): what a reconnect replays by
  itself; older or further-back messages are a gap the client reports;
- the keep window (default 7 days and 100,000 messages): what stays in the file, so an app
  told of a gap can still fetch it (`fetch_messages`). Beyond it messages are deleted and the
  highest deleted id is remembered, so a gap is never mistaken for "nothing was sent".

Ids come from SQLite's AUTOINCREMENT: increasing, never reused, also across restarts of the
server on the same file. A message may carry its sender's `muid` (rule D20): the file keeps at
most one message per (sender, muid), so a resend is answered with the stored message for as long
as the keep window holds it. WAL with synchronous=NORMAL: a committed message survives a crash of
the server process (not necessarily of the machine), at a few microseconds per message.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["IN_MEMORY", "History", "ReplayPlan", "Retention", "StoredMessage"]

#: Pass as `path` for a history that lives only as long as the server object.
IN_MEMORY = ":memory:"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    receiver TEXT NOT NULL,
    sender TEXT NOT NULL,
    text TEXT NOT NULL,
    sent_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_receiver ON messages (receiver, id);
CREATE INDEX IF NOT EXISTS messages_by_time ON messages (sent_at);
CREATE TABLE IF NOT EXISTS forgotten (receiver TEXT PRIMARY KEY, upto INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS users (uid TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS tokens (token TEXT PRIMARY KEY, uid TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Retention:
    """How much history the server replays by itself, and how much it keeps (seconds, counts)."""

    replay_seconds: float = 120.0
    replay_messages: int = 10_000
    keep_seconds: float = 7 * 86_400.0
    keep_messages: int = 100_000

    def __post_init__(self) -> None:
        if not (0 < self.replay_seconds <= self.keep_seconds
                and 0 < self.replay_messages <= self.keep_messages):
            raise ValueError("retention: need 0 < replay window <= keep window (seconds and messages)")


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message the server stored: `id` (increasing, from 1), `sender` and `receiver` uids, `text`,
    `sent_at` (seconds since the epoch), `muid` (the sender's own id, D20; None without one)."""

    id: int
    sender: str
    receiver: str
    text: str
    sent_at: float
    muid: str | None = None  # the sender's own id of the message (D20); None: sent without one


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """What a reconnect after `last_id` gets: everything after `start_after`, and whether
    messages after `last_id` up to `start_after` are missing from the replay (a gap)."""

    start_after: int
    gap: bool


class History:
    """One SQLite file (or memory) holding the server's users, tokens and messages.

    The file's directory must exist: none is created (sqlite3.Error otherwise).
    """

    def __init__(self, path: Path | str = IN_MEMORY, retention: Retention | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        import time

        self.retention = retention or Retention()
        self._clock = clock or time.time
        self.path = str(path)
        if self.path != IN_MEMORY:
            if not Path(self.path).exists():  # tokens are secrets: owner only, from the start
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(messages)")}
        if "muid" not in columns:  # a file written before D20
            self._db.execute("ALTER TABLE messages ADD COLUMN muid TEXT")
        # One index serves both the muid rule (D20) and the reading of what a user sent.
        self._db.execute("CREATE UNIQUE INDEX IF NOT EXISTS messages_by_muid ON messages (sender, muid)")
        self._counts: dict[str, int] = {}
        self._last_expiry = -float("inf")
        row = self._db.execute("SELECT max(id) FROM messages").fetchone()
        seq = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'messages'").fetchone()
        self.head = max(row[0] or 0, seq[0] if seq else 0)  # the last id handed out

    def now(self) -> float:
        """The time now (seconds since the epoch, or the test's clock)."""
        return self._clock()

    def close(self) -> None:
        """Close the database (the History is unusable after)."""
        self._db.close()

    # --- users and tokens (so that a server started again on the same file knows them) -------

    def users(self) -> set[str]:
        """The uids of the users the server knows."""
        return {uid for (uid,) in self._db.execute("SELECT uid FROM users")}

    def tokens(self) -> dict[str, str]:
        """The auth tokens the server issued: token -> uid."""
        return dict(self._db.execute("SELECT token, uid FROM tokens").fetchall())

    def add_user(self, uid: str) -> None:
        """Remember user `uid` (kept across a restart on the same file); known already, nothing changes."""
        self._db.execute("INSERT OR IGNORE INTO users (uid) VALUES (?)", (uid,))

    def add_token(self, token: str, uid: str) -> None:
        """Remember auth token `token` for user `uid` (replacing that token's user)."""
        self._db.execute("INSERT OR REPLACE INTO tokens (token, uid) VALUES (?, ?)", (token, uid))

    def revoke(self, uid: str) -> None:
        """Forget every auth token of user `uid`: a login or socket auth with one of them fails (D16)."""
        self._db.execute("DELETE FROM tokens WHERE uid = ?", (uid,))

    # --- messages -----------------------------------------------------------------------------

    def add(self, sender: str, receiver: str, text: str, sent_at: float,
            muid: str | None = None) -> StoredMessage:
        """Store a message for `receiver` and give it the next id (committed on return). A `muid`
        already stored for `sender` raises sqlite3.IntegrityError (then `find` it): D20."""
        cursor = self._db.execute(
            "INSERT INTO messages (receiver, sender, text, sent_at, muid) VALUES (?, ?, ?, ?, ?)",
            (receiver, sender, text, sent_at, muid))
        message_id = cursor.lastrowid
        assert message_id is not None
        self.head = message_id
        count = self._count(receiver) + 1
        self._counts[receiver] = count
        if count > self.retention.keep_messages + max(1, self.retention.keep_messages // 100):
            self._trim(receiver)  # in steps of 1%: a delete per message would cost a scan each
        self._expire()
        return StoredMessage(message_id, sender, receiver, text, sent_at, muid)

    def find(self, sender: str, muid: str) -> StoredMessage | None:
        """The kept message `sender` sent under `muid` (D20), if any."""
        row = self._db.execute(
            "SELECT id, sender, receiver, text, sent_at, muid FROM messages WHERE sender = ? AND muid = ?",
            (sender, muid)).fetchone()
        return StoredMessage(*row) if row is not None else None

    def after(self, receiver: str, after_id: int, limit: int, *,
              include_sent: bool = False) -> list[StoredMessage]:
        """`receiver`'s kept messages with ids above `after_id`, oldest first, at most `limit`;
        with `include_sent`, also those `receiver` sent (D20)."""
        if include_sent:
            rows = self._db.execute(
                "SELECT id, sender, receiver, text, sent_at, muid FROM messages "
                "WHERE id IN (SELECT id FROM (SELECT id FROM messages WHERE receiver = ? AND id > ? "
                "ORDER BY id LIMIT ?) UNION ALL SELECT id FROM (SELECT id FROM messages WHERE sender = ? "
                "AND receiver != ? AND id > ? ORDER BY id LIMIT ?)) ORDER BY id LIMIT ?",
                (receiver, after_id, limit, receiver, receiver, after_id, limit, limit)).fetchall()
        else:
            rows = self._db.execute(
                "SELECT id, sender, receiver, text, sent_at, muid FROM messages "
                "WHERE receiver = ? AND id > ? ORDER BY id LIMIT ?", (receiver, after_id, limit)).fetchall()
        return [StoredMessage(*row) for row in rows]

    def plan_replay(self, receiver: str, last_id: int) -> ReplayPlan:
        """Where a reconnect of `receiver` that last delivered `last_id` starts its replay."""
        self._expire()
        window = self.retention
        start_after = last_id
        row = self._db.execute(  # the newest message too far back to replay by count
            "SELECT id FROM messages WHERE receiver = ? AND id > ? ORDER BY id DESC LIMIT 1 OFFSET ?",
            (receiver, last_id, window.replay_messages)).fetchone()
        if row is not None:
            start_after = row[0]
        row = self._db.execute(  # the newest message too old to replay
            "SELECT max(id) FROM messages WHERE receiver = ? AND id > ? AND sent_at < ?",
            (receiver, last_id, self.now() - window.replay_seconds)).fetchone()
        if row[0] is not None:
            start_after = max(start_after, row[0])
        # Deleted from the keep window: gone, so the gap runs at least up to them.
        start_after = max(start_after, self.forgotten_upto(receiver))
        return ReplayPlan(start_after, start_after > last_id)

    def forgotten_upto(self, receiver: str) -> int:
        """The highest id of `receiver`'s messages deleted from the keep window (0: none)."""
        row = self._db.execute("SELECT upto FROM forgotten WHERE receiver = ?", (receiver,)).fetchone()
        return int(row[0]) if row is not None else 0

    def _count(self, receiver: str) -> int:
        count = self._counts.get(receiver)
        if count is None:
            count = self._db.execute("SELECT count(*) FROM messages WHERE receiver = ?",
                                     (receiver,)).fetchone()[0]
        return int(count)

    def _trim(self, receiver: str) -> None:
        row = self._db.execute("SELECT id FROM messages WHERE receiver = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
                               (receiver, self.retention.keep_messages)).fetchone()
        if row is not None:
            self._forget(receiver, row[0])
        self._counts.pop(receiver, None)

    def _expire(self) -> None:
        """Delete what left the keep window (at most once a second of the clock)."""
        now = self.now()
        if now - self._last_expiry < 1.0:
            return
        self._last_expiry = now
        cutoff = now - self.retention.keep_seconds
        oldest = self._db.execute("SELECT min(sent_at) FROM messages").fetchone()[0]  # by the index
        if oldest is None or oldest >= cutoff:
            return
        expired = self._db.execute(  # only the expired rows, through the time index
            "SELECT receiver, max(id) FROM messages INDEXED BY messages_by_time WHERE sent_at < ? "
            "GROUP BY receiver", (cutoff,)).fetchall()
        for receiver, upto in expired:
            self._forget(receiver, upto)
            self._counts.pop(receiver, None)

    def _forget(self, receiver: str, upto: int) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM messages WHERE receiver = ? AND id <= ?", (receiver, upto))
            self._db.execute("INSERT INTO forgotten (receiver, upto) VALUES (?, ?) ON CONFLICT (receiver) "
                             "DO UPDATE SET upto = max(upto, excluded.upto)", (receiver, upto))
