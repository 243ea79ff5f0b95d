"""Session and login (L1, D9, D10, D16), sans I/O: the front end only carries one request to
the login endpoint and brings back its one answer (`_ask_login`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import ClassVar

from cometchat_fsm.core import errors
from cometchat_fsm.core.errors import CometChatException
from cometchat_fsm.core.events import Login, LoginFailed, LoginVerified, Logout, SessionRenewed
from cometchat_fsm.core.states import Phase
from cometchat_fsm.session.calls import CallsPart
from cometchat_fsm.session.checks import require_str, require_uid
from cometchat_fsm.session.values import User
from cometchat_fsm.wire import frames as wire
from cometchat_fsm.wire.codec import ProtocolError, decode, encode, shown


class LoginPart(CallsPart):
    """login (with an auth key or a token), its renewal, and logout."""

    __slots__ = ("_logins", "_verifying")

    _logins: int  # counts logins and logouts: an answer for an older one is void
    _verifying: bool  # a token login waits for its answer (its user is not known before)

    def _init_login(self) -> None:
        self._logins = 0
        self._verifying = False

    # --- the front end's hooks ------------------------------------------------------------------
    #: What the front end's transport raises when `connect_timeout` ran out, and what a socket's
    #: use may fail with short of a bug; `_log` is the front end's logger.
    _login_timeout: ClassVar[type[Exception]]
    _socket_ends: ClassVar[tuple[type[Exception], ...]]
    _log: ClassVar[logging.Logger]

    async def _ask_login(self, request: str, answered: Callable[[str | bytes], None]) -> None:
        """Send `request` to the login endpoint, hand its one answer to `answered`, then close,
        all within `connect_timeout`; raise whatever the transport raised."""
        raise NotImplementedError

    async def _exchange_login(self, request: str) -> str | bytes:
        """The login endpoint's one answer to `request`. Once the answer is whole, a failure of
        the close after it (it took the rest of the time, or the server pinged after our close
        frame) is only logged: the answer stands."""
        got: list[str | bytes] = []
        try:
            await self._ask_login(request, got.append)
        except Exception as exc:
            if not got:
                raise
            self._log.info("the login connection did not close cleanly (%s)", type(exc).__name__)
        return got[0]

    def _login_failure(self, exc: Exception) -> CometChatException:
        """What login() raises when the login endpoint gave no usable answer (ERR_LOGIN_FAILED);
        a failure that is not the transport's is logged as unexpected."""
        if isinstance(exc, self._login_timeout):
            return errors.LOGIN_FAILED.exception("the server did not answer in time")
        if not isinstance(exc, (*self._socket_ends, ProtocolError)):
            self._log.warning("the login request failed unexpectedly", exc_info=exc)
        return errors.LOGIN_FAILED.exception(f"{type(exc).__name__}: {exc}")

    # --- the calls ------------------------------------------------------------------------------
    async def login(self, uid: str | None = None, *, auth_key: str | None = None,
                    auth_token: str | None = None) -> User:
        """Log in with a uid and the app's auth key, or with an auth token (L1, D10, D16).

        The server verifies every login, also one as the user already logged in (a stored
        session's token may have been revoked): its fresh token replaces the old one and is
        stored; for the same user no new socket opens (D10). Raises `ERR_LOGIN_IN_PROGRESS`
        while another login waits for its answer, `ERR_LOGIN_CANCELLED` when a logout or another
        login overtook this one, and the server's own code (`ERR_AUTH_REJECTED`, ...) when it
        refuses the credentials.
        """
        self._check_open()
        if auth_token is not None:
            if uid is not None or auth_key is not None:
                raise errors.LOGIN_ARGUMENTS.exception("auth_token came with a uid or an auth_key")
            token = require_str("auth_token", auth_token, errors.LOGIN_ARGUMENTS)
            return await self._login_with_token(token)
        if uid is None:
            raise errors.LOGIN_ARGUMENTS.exception("neither a uid nor an auth_token")
        uid = require_uid("uid", uid)
        if auth_key is None:
            raise errors.LOGIN_ARGUMENTS.exception("a uid without an auth_key")
        auth_key = require_str("auth_key", auth_key, errors.LOGIN_ARGUMENTS)
        if self._verifying:
            raise errors.LOGIN_IN_PROGRESS.exception()
        request = wire.Login(uid, auth_key)
        if self._model.user == uid and self._model.phase is not Phase.LOGGING_IN \
                and not self._model.credentials_rejected():
            self._call("login", Login(uid), uid=uid)  # D10: same user, no new socket
            return await self._renew(uid, request)
        # Raises ERR_LOGIN_IN_PROGRESS (D10); logs a different user out first.
        leaving = self._leaving()
        self._call("login", Login(uid), uid=uid)
        self._switch_user(leaving)
        self._token = None
        self._logins += 1
        mine = self._logins
        try:
            answer = await self._verify(request)
        except CometChatException as exc:
            if self._closed:  # ERR_CLIENT_CLOSED: the closed client's model is left as it was
                raise
            if self._logins != mine or self._model.phase is not Phase.LOGGING_IN:
                raise errors.LOGIN_CANCELLED.exception(f"the server then answered {exc.code}") from None
            self._apply(LoginFailed(exc))
            raise
        if self._logins != mine or self._model.phase is not Phase.LOGGING_IN:
            raise errors.LOGIN_CANCELLED.exception()
        self._token, self._last_id = answer.auth_token, self._stored_place(uid, answer.last_id)
        self._apply(LoginVerified())
        return User(uid)

    async def _renew(self, uid: str, request: wire.Login) -> User:
        """D16: a login as the user already logged in still goes to the server; its fresh token
        replaces the old one (the next socket presents it) and is stored with the current place.
        Unlike a first login it holds no other login back (D10): a later one, of this user or
        another, goes ahead, and makes this one's answer void (ERR_LOGIN_CANCELLED), as in
        the Simulation and the oracle."""
        self._logins += 1
        mine = self._logins
        answer = await self._verify(request)
        if self._logins != mine or self._model.user != uid:
            raise errors.LOGIN_CANCELLED.exception()
        self._keep_token(answer.auth_token)
        return User(uid)

    def _keep_token(self, fresh: str) -> None:
        """The fresh token of a renewed login (D16): the core stores it with the user's place."""
        self._token = fresh
        self._apply(SessionRenewed())

    async def _login_with_token(self, token: str) -> User:
        if self._verifying or self._model.phase is Phase.LOGGING_IN:
            raise errors.LOGIN_IN_PROGRESS.exception()
        self._verifying = True
        self._logins += 1
        mine = self._logins
        try:
            answer = await self._verify(wire.TokenLogin(token))
        finally:
            self._verifying = False
        if self._logins != mine:
            raise errors.LOGIN_CANCELLED.exception()
        uid = answer.uid
        if self._model.user == uid and not self._model.credentials_rejected():
            self._call("login", Login(uid), uid=uid)  # D10: same user, no new socket
            self._keep_token(answer.auth_token)
            return User(uid)
        leaving = self._leaving()
        self._call("login", Login(uid), uid=uid)
        self._switch_user(leaving)
        self._token, self._last_id = answer.auth_token, self._stored_place(uid, answer.last_id)
        self._apply(LoginVerified())
        return User(uid)

    async def _verify(self, request: wire.Login | wire.TokenLogin) -> wire.LoginOk:
        """Ask the server's login endpoint; return its `login_ok` (uid, token, newest message id:
        messages after it are this login's, D13) or raise its typed error; ERR_CLIENT_CLOSED if
        the client was closed while the request was under way."""
        try:
            answer = decode(await self._exchange_login(encode(request)), wire.Origin.SERVER)
        except CometChatException:
            self._check_open()
            raise
        except Exception as exc:
            self._check_open()
            raise self._login_failure(exc) from None
        # The app's client ended while the answer was on its way (a restart): it speaks for no
        # one now, and nothing may act on the closed client (ERR_CLIENT_CLOSED).
        self._check_open()
        match answer:
            case wire.LoginOk():
                return answer
            case wire.ErrorAnswer(code=code, message=message):
                raise CometChatException(code or "ERR_LOGIN_FAILED", message or "Login failed.",
                                         "Check the uid and the credentials, then try again.")
        raise errors.LOGIN_FAILED.exception(f"unexpected answer {shown(answer.type)}")

    async def logout(self) -> None:
        """D9: close everything, forget the stored session (the user's place is kept, D19)."""
        self._check_open()
        self._logins += 1  # a login still waiting for its answer is void
        leaving = self._leaving()
        self._call("logout", Logout())
        self._token = None
        self._switch_user(leaving)
