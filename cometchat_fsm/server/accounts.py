"""Users, tokens and the login endpoint's answers (L1, D16): in memory and in the history file,
so that they survive `restart()` and, in a file, the process. Auth keys and tokens never reach
the log."""

from __future__ import annotations

import hmac
import secrets

from cometchat_fsm.core.errors import ErrorSpec
from cometchat_fsm.server.connection import _redact, logger
from cometchat_fsm.server.state import ServerState
from cometchat_fsm.wire import frames as wire
from cometchat_fsm.wire.codec import (
    UID,
)

INVALID_UID = ErrorSpec(
    "ERR_INVALID_UID",
    "The uid is not valid.",
    "A uid is 1 to 100 characters of letters, digits, '_', '-' and '.'.",
)


def is_valid_uid(uid: object) -> bool:
    """True for a uid docs/protocol.md allows: 1 to 100 ASCII letters, digits, `_`, `-`, `.`."""
    return isinstance(uid, str) and UID.fullmatch(uid) is not None


class AccountsPart(ServerState):
    """Users, tokens, and what a login frame is answered."""

    def add_user(self, uid: str) -> None:
        """Create the user `uid` (idempotent); raises CometChatException ERR_INVALID_UID for a bad uid."""
        if not is_valid_uid(uid):
            raise INVALID_UID.exception(reason=f"got {uid!r}")
        if uid not in self._users:
            self._users.add(uid)
            self.history.add_user(uid)

    @property
    def users(self) -> frozenset[str]:
        """The uids the server knows (given at start or added by `add_user`)."""
        return frozenset(self._users)

    def revoke(self, uid: str) -> None:
        """Forget every token of `uid`: its next token login or auth fails. Open sockets stay."""
        self._tokens = {token: owner for token, owner in self._tokens.items() if owner != uid}
        self.history.revoke(uid)

    def _login(self, frame: wire.Login | wire.TokenLogin) -> wire.LoginOk | wire.ErrorAnswer:
        if isinstance(frame, wire.TokenLogin):
            token = frame.auth_token
            uid = self._tokens.get(token)
            if uid is None:
                logger.info("token login refused: unknown token %s", _redact(token))
                return wire.ErrorAnswer("ERR_AUTH_TOKEN_INVALID",
                                        "The auth token is not valid; log in with the auth key again.")
            logger.info("token login of %s", uid)
            return wire.LoginOk(uid, token, self.history.head)
        uid, key = frame.uid, frame.auth_key
        if not hmac.compare_digest(key.encode("utf-8", "surrogatepass"), self.auth_key.encode()):
            logger.info("login of %r refused: wrong auth key", uid)
            return wire.ErrorAnswer("ERR_AUTH_KEY_INVALID", "The auth key is not valid.")
        if uid not in self._users:
            logger.info("login refused: unknown uid %r", uid)
            return wire.ErrorAnswer("ERR_UID_NOT_FOUND", f"The user {uid!r} does not exist.")
        token = secrets.token_urlsafe(32)
        self._tokens[token] = uid
        self.history.add_token(token, uid)
        logger.info("login of %s: token %s", uid, _redact(token))
        return wire.LoginOk(uid, token, self.history.head)
