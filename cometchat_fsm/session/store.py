"""The stored login (L1, L2): one small file per app id, written atomically, owner-only.

Beside it, per app id, the places of D13 by user (D19: a user switch keeps each user's place;
D21: written at most a second behind what the app took). A logout deletes the login, not the
places.

A damaged or unreadable file must never stop an app from starting: it reads as "no session"
with a warning, and the next login overwrites it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import platformdirs

log = logging.getLogger("cometchat_fsm.session")

#: Users whose place (D19) a places file keeps, the most recently written.
MAX_PLACES = 100


@dataclass(frozen=True, slots=True)
class StoredSession:
    """The stored login of one app id: `uid`, `auth_token` (never shown in its repr) and the
    place, the id of the last message the app took (D13)."""

    uid: str
    auth_token: str
    #: The last message handed to the app when the client closed (D13): a restored session resumes
    #: after it. Absent in files written before a message arrived, or by older versions.
    last_id: int | None = None

    def __repr__(self) -> str:  # the token is a secret: never in logs or reprs
        return f"StoredSession(uid={self.uid!r}, auth_token=<hidden>, last_id={self.last_id!r})"


def default_directory() -> Path:
    """Where sessions are kept by default: the user's data directory (platformdirs) / sessions."""
    return Path(platformdirs.user_data_dir("cometchat-fsm", appauthor=False)) / "sessions"


class SessionStore:
    """Sessions under `directory` (default: the user's data directory), one file per app id."""

    def __init__(self, directory: Path | str | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_directory()

    def path_for(self, app_id: str) -> Path:
        """The session file of `app_id` in this store's directory."""
        # App ids are free text: keep a readable prefix and make the name unique with a hash.
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", app_id)[:40]
        digest = hashlib.sha256(app_id.encode()).hexdigest()[:12]
        return self.directory / f"{safe}-{digest}.json"

    def load(self, app_id: str) -> StoredSession | None:
        """The stored session of `app_id`, or None: missing, unreadable or damaged files read as
        none, with a warning, never an error (L2)."""
        path = self.path_for(app_id)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("cannot read the stored session %s (%s); starting logged out", path, exc)
            return None
        try:
            data = json.loads(text)
            uid, token = data["uid"], data["auth_token"]
            if not isinstance(uid, str) or not isinstance(token, str) or not uid or not token:
                raise ValueError("uid and auth_token must be non-empty strings")
            if data.get("app_id") != app_id:
                raise ValueError("the file belongs to another app id")
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            log.warning("the stored session %s is damaged (%s); starting logged out", path, exc)
            return None
        last_id = data.get("last_id")
        if not isinstance(last_id, int) or isinstance(last_id, bool) or last_id < 0:
            last_id = None  # a damaged place only costs the replay, never the login
        return StoredSession(uid, token, last_id)

    def save(self, app_id: str, session: StoredSession) -> None:
        """Write atomically (temporary file + rename), readable by its owner only (0600)."""
        payload = json.dumps({"app_id": app_id, "uid": session.uid, "auth_token": session.auth_token,
                              "last_id": session.last_id})
        self._write(self.path_for(app_id), payload)

    @staticmethod
    def _write(path: Path, payload: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".session-", suffix=".tmp")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def delete(self, app_id: str) -> None:
        """Delete the stored session of `app_id` (logout D9, rejected credentials D16); a missing
        one is no error."""
        self.path_for(app_id).unlink(missing_ok=True)

    def places_path_for(self, app_id: str) -> Path:
        """The file of every user's place on `app_id` (D19: places are kept per user)."""
        path = self.path_for(app_id)
        return path.with_name(path.stem + ".places.json")

    def load_places(self, app_id: str) -> dict[str, int]:
        """Every user's stored place on `app_id`: uid -> id of the last message the app took.
        A missing, unreadable or damaged file reads as none (only replays cost more)."""
        path = self.places_path_for(app_id)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            places = data["places"] if isinstance(data, dict) and data.get("app_id") == app_id else {}
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, RecursionError) as exc:
            log.warning("the stored places %s are damaged (%s); replays start at login", path, exc)
            return {}
        if not isinstance(places, dict):
            return {}
        return {uid: place for uid, place in places.items()
                if isinstance(uid, str) and type(place) is int and place >= 0}

    def load_place(self, app_id: str, uid: str) -> int | None:
        """`uid`'s stored place on `app_id` (the id of the last message taken, D13, D19), or None."""
        return self.load_places(app_id).get(uid)

    def save_place(self, app_id: str, uid: str, place: int) -> None:
        """Store `uid`'s place on `app_id` (atomically, 0600); the MAX_PLACES most recent users are kept."""
        places = self.load_places(app_id)
        places.pop(uid, None)
        places[uid] = place  # the most recent last
        kept = dict(list(places.items())[-MAX_PLACES:])
        self._write(self.places_path_for(app_id), json.dumps({"app_id": app_id, "places": kept}))
