"""The typed error of the CometChat SDKs, and the catalogue of the errors this library raises.

Every error the library raises on purpose is a `CometChatException` built from this catalogue,
so that a caller can branch on `.code` and show `.message` / `.details` unchanged. The codes are
constants here and in the package (`from cometchat_fsm import ERR_AUTH_REJECTED`), each equal to
its string; `ERROR_CODES` is the complete set.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- Error codes ------------------------------------------------------------------------------
# Every code a CometChatException from this package can carry, as a constant equal to its string:
# `except CometChatException as e: if e.code == ERR_AUTH_REJECTED: ...`. `ERROR_CODES` holds them
# all (a test keeps it complete: every "ERR_..." string in the package is one of them).

# Raised by the API calls (the catalogue below; the rule that raises each is named there).
ERR_CHAT_API_FAILURE = "ERR_CHAT_API_FAILURE"  # L3: init refused the app id or the settings
ERR_NOT_LOGGED_IN = "ERR_NOT_LOGGED_IN"  # E1: connect/disconnect/ping without a user
ERR_NO_WEBSOCKET_CONNECTION = "ERR_NO_WEBSOCKET_CONNECTION"  # D3: ping (or a send) not connected
ERR_LOGIN_IN_PROGRESS = "ERR_LOGIN_IN_PROGRESS"  # D10: a second login while one is pending
ERR_APP_IN_BACKGROUND = "ERR_APP_IN_BACKGROUND"  # P1: auto mode refuses connect() in the background
ERR_AUTH_REJECTED = "ERR_AUTH_REJECTED"  # D5, D16: the server rejected the socket's authentication
ERR_RECONNECT_ATTEMPTS_EXHAUSTED = "ERR_RECONNECT_ATTEMPTS_EXHAUSTED"  # D15: the retries ran out
ERR_WEBSOCKET_CONNECTION_FAILED = "ERR_WEBSOCKET_CONNECTION_FAILED"  # an attempt failed (D6, P2)
ERR_WEBSOCKET_CONNECTION_CANCELLED = "ERR_WEBSOCKET_CONNECTION_CANCELLED"  # an attempt was ended (D1, D9)
ERR_NETWORK_OFFLINE = "ERR_NETWORK_OFFLINE"  # live client: connect() while offline (D6)
ERR_SEND_TIMEOUT = "ERR_SEND_TIMEOUT"  # D20: a send unanswered in time (SendFailed)
ERR_SEND_INTERRUPTED = "ERR_SEND_INTERRUPTED"  # D20: a send cut by its socket's close (SendFailed)
ERR_FETCH_TIMEOUT = "ERR_FETCH_TIMEOUT"  # D13: a history request unanswered in time
ERR_FETCH_INTERRUPTED = "ERR_FETCH_INTERRUPTED"  # D13: a history request cut by its socket's close
ERR_INVALID_UID = "ERR_INVALID_UID"  # a uid that is not 1-100 of [A-Za-z0-9_.-]
ERR_LOGIN_FAILED = "ERR_LOGIN_FAILED"  # the login request got no usable answer
ERR_LOGIN_CANCELLED = "ERR_LOGIN_CANCELLED"  # D10: logout() or another login() replaced it
ERR_CLIENT_CLOSED = "ERR_CLIENT_CLOSED"  # a call on a client whose open_client block ended
ERR_INVALID_ARGUMENT = "ERR_INVALID_ARGUMENT"  # an argument of the right type but a bad value
ERR_CONNECT_TIMEOUT = "ERR_CONNECT_TIMEOUT"  # connect() stopped waiting (a guard: P2 ends attempts)
# Reported by the server (the reference server and the Simulation's ideal one) and passed on.
ERR_AUTH_KEY_INVALID = "ERR_AUTH_KEY_INVALID"  # D16: login refused (uid and auth key)
ERR_AUTH_TOKEN_INVALID = "ERR_AUTH_TOKEN_INVALID"  # D16: login refused (auth token)
ERR_UID_NOT_FOUND = "ERR_UID_NOT_FOUND"  # no such user (login, or a message's receiver)
ERR_TEXT_TOO_LONG = "ERR_TEXT_TOO_LONG"  # the server refused a message's text as too long
ERR_TEXT_INVALID = "ERR_TEXT_INVALID"  # the server refused a message's text as not valid Unicode
ERR_MUID_CONFLICT = "ERR_MUID_CONFLICT"  # D20: the muid names another message of this sender
ERR_SEND_FAILED = "ERR_SEND_FAILED"  # the server refused a message without saying why
# Raised by the tools (the command line, the simulate language, traces, specs, the driver protocol).
ERR_BAD_SCRIPT = "ERR_BAD_SCRIPT"  # a `simulate` script with an unknown word or a bad value
ERR_BAD_TRACE = "ERR_BAD_TRACE"  # a trace file that does not follow specs/trace-format.md
ERR_BAD_SPECS = "ERR_BAD_SPECS"  # malformed specs/*.toml
ERR_BAD_COMMAND = "ERR_BAD_COMMAND"  # a driver-protocol command that is not JSON or comes before init
ERR_UNSUPPORTED = "ERR_UNSUPPORTED"  # a driver-protocol command the implementation does not support
ERR_UNKNOWN_COMMAND = "ERR_UNKNOWN_COMMAND"  # a control-channel command the server does not know
ERR_UNKNOWN_USER = "ERR_UNKNOWN_USER"  # a control-channel command naming a user the server lacks
ERR_TRACE_MODE_MISMATCH = "ERR_TRACE_MODE_MISMATCH"  # a TraceRecorder of the other mode than the client's
ERR_TRACE_CLOSED = "ERR_TRACE_CLOSED"  # a line noted after the TraceRecorder's end line

#: Every error code above (a frozenset of strings).
ERROR_CODES = frozenset({
    ERR_CHAT_API_FAILURE, ERR_NOT_LOGGED_IN, ERR_NO_WEBSOCKET_CONNECTION, ERR_LOGIN_IN_PROGRESS,
    ERR_APP_IN_BACKGROUND, ERR_AUTH_REJECTED, ERR_RECONNECT_ATTEMPTS_EXHAUSTED,
    ERR_WEBSOCKET_CONNECTION_FAILED, ERR_WEBSOCKET_CONNECTION_CANCELLED, ERR_NETWORK_OFFLINE,
    ERR_SEND_TIMEOUT, ERR_SEND_INTERRUPTED, ERR_FETCH_TIMEOUT, ERR_FETCH_INTERRUPTED, ERR_INVALID_UID,
    ERR_LOGIN_FAILED, ERR_LOGIN_CANCELLED, ERR_CLIENT_CLOSED, ERR_INVALID_ARGUMENT, ERR_CONNECT_TIMEOUT,
    ERR_AUTH_KEY_INVALID, ERR_AUTH_TOKEN_INVALID, ERR_UID_NOT_FOUND, ERR_TEXT_TOO_LONG, ERR_TEXT_INVALID,
    ERR_MUID_CONFLICT, ERR_SEND_FAILED,
    ERR_BAD_SCRIPT, ERR_BAD_TRACE, ERR_BAD_SPECS, ERR_BAD_COMMAND, ERR_UNSUPPORTED,
    ERR_UNKNOWN_COMMAND, ERR_UNKNOWN_USER, ERR_TRACE_MODE_MISMATCH, ERR_TRACE_CLOSED,
})


class CometChatException(Exception):
    """An error with the three fields the CometChat SDKs give: code, message, details."""

    def __init__(self, code: str, message: str, details: str = "", *, reason: str = "") -> None:
        super().__init__(code, message, details)
        self.code = code
        self.message = message
        self.details = details
        #: What exactly was wrong, where the SDK's fixed texts cannot say it (kept out of details).
        self.reason = reason

    def __str__(self) -> str:
        parts = [f"{self.code}: {self.message}"]
        if self.details:
            parts.append(self.details)
        if self.reason:
            parts.append(f"({self.reason})")
        return " ".join(parts)

    def __repr__(self) -> str:
        return f"CometChatException(code={self.code!r}, message={self.message!r}, details={self.details!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CometChatException):
            return NotImplemented
        return (self.code, self.message, self.details) == (other.code, other.message, other.details)

    def __hash__(self) -> int:
        return hash((self.code, self.message, self.details))


class SendFailed(CometChatException):
    """A `send_message` that ended without the server's answer (rule D20): `muid` is the id the
    message went out with, `may_be_stored` whether the server may have stored it. Sending it again
    with the same muid is always safe: the server keeps one message per (sender, muid)."""

    def __init__(self, code: str, message: str, details: str = "", *, muid: str, may_be_stored: bool,
                 reason: str = "") -> None:
        super().__init__(code, message, details, reason=reason)
        self.muid = muid
        self.may_be_stored = may_be_stored

    def __repr__(self) -> str:
        return (f"SendFailed(code={self.code!r}, muid={self.muid!r}, may_be_stored={self.may_be_stored!r}, "
                f"details={self.details!r})")


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """One row of the error catalogue; `exception()` builds the error to raise."""

    code: str
    message: str
    details: str

    def exception(self, reason: str = "") -> CometChatException:
        """This error as a `CometChatException` (code, message, details), `reason` saying what
        exactly was wrong (shown by `str()`, kept out of `details`)."""
        return CometChatException(self.code, self.message, self.details, reason=reason)

    def send_failed(self, *, muid: str, may_be_stored: bool, reason: str = "") -> SendFailed:
        """This error for a send that ended unanswered (D20)."""
        return SendFailed(self.code, self.message, self.details, muid=muid, may_be_stored=may_be_stored,
                          reason=reason)


# L3: init with an empty app id or an unknown region.
INIT_FAILED = ErrorSpec(
    ERR_CHAT_API_FAILURE,
    "SDK initialization failed.",
    "Please verify your App ID and region, then try again.",
)
# E1: the three API calls without a logged-in user.
CONNECT_NOT_LOGGED_IN = ErrorSpec(
    ERR_NOT_LOGGED_IN,
    "No active user session.",
    "Please log in before establishing a WebSocket connection.",
)
DISCONNECT_NOT_LOGGED_IN = ErrorSpec(
    ERR_NOT_LOGGED_IN,
    "No active user session.",
    "Please log in before disconnecting the WebSocket connection.",
)
PING_NOT_LOGGED_IN = ErrorSpec(
    ERR_NOT_LOGGED_IN,
    "No active user session.",
    "Please log in before sending a ping to the server.",
)
# D3: ping while logged in but not connected.
PING_NOT_CONNECTED = ErrorSpec(
    ERR_NO_WEBSOCKET_CONNECTION,
    "No WebSocket connection.",
    "Call connect() and wait for it to succeed before sending a ping.",
)
# D10: a second login while one is in flight.
LOGIN_IN_PROGRESS = ErrorSpec(
    ERR_LOGIN_IN_PROGRESS,
    "A login is already in progress.",
    "Wait for the current login to finish before calling login() again.",
)
# P1 (project decision): auto mode keeps no connection in the background (A2).
CONNECT_IN_BACKGROUND = ErrorSpec(
    ERR_APP_IN_BACKGROUND,
    "Auto mode does not connect while the app is in the background.",
    "Connect when the app returns to the foreground, or use manual mode "
    "(auto_establish_socket_connection=False) to keep a background connection.",
)
# D5, D16: the server refused the socket's authentication; connect() with those credentials.
AUTH_REJECTED = ErrorSpec(
    ERR_AUTH_REJECTED,
    "The server rejected the connection's authentication.",
    "Log in again to get a valid session; the client does not retry a rejected token.",
)
# D15: the reconnection attempts ran out (only with max_reconnect_attempts set).
RETRIES_EXHAUSTED = ErrorSpec(
    ERR_RECONNECT_ATTEMPTS_EXHAUSTED,
    "The connection could not be re-established.",
    "The configured maximum number of reconnection attempts was reached; call connect() to try again.",
)
# An attempt ended without a connection (socket refused, closed, or timed out). The details say
# what the client does next (D15: never a retry it will not make), one text per case.
ATTEMPT_FAILED = ErrorSpec(  # foreground, attempts left: a retry is scheduled (D6)
    ERR_WEBSOCKET_CONNECTION_FAILED,
    "The WebSocket connection attempt failed.",
    "The client retries by itself; listen for on_connected.",
)
ATTEMPT_FAILED_GAVE_UP = ErrorSpec(  # foreground, the maximum number of attempts used up (D15)
    ATTEMPT_FAILED.code,
    ATTEMPT_FAILED.message,
    "The maximum number of reconnection attempts is used up, so the client does not retry; "
    "call connect() to try again.",
)
ATTEMPT_FAILED_IN_BACKGROUND = ErrorSpec(  # manual mode in the background: no retry (M5)
    ATTEMPT_FAILED.code,
    ATTEMPT_FAILED.message,
    "The client does not retry while the app is in the background; call connect() again.",
)
# An attempt ended before its outcome, because of a call or a signal; again one text per case.
ATTEMPT_CANCELLED = ErrorSpec(  # disconnect() or logout() (D1, D9)
    ERR_WEBSOCKET_CONNECTION_CANCELLED,
    "The WebSocket connection attempt was cancelled.",
    "disconnect() or logout() ended the attempt; call connect() again (after login() if logged out).",
)
ATTEMPT_CANCELLED_OFFLINE = ErrorSpec(  # the network was lost in the foreground (D6a)
    ATTEMPT_CANCELLED.code,
    ATTEMPT_CANCELLED.message,
    "The network went offline; the client connects by itself when the platform reports it back.",
)
ATTEMPT_CANCELLED_AUTO_BACKGROUND = ErrorSpec(  # auto mode left the foreground (A2)
    ATTEMPT_CANCELLED.code,
    ATTEMPT_CANCELLED.message,
    "Auto mode keeps no connection in the background; the client connects again when the app "
    "returns to the foreground.",
)
ATTEMPT_CANCELLED_MANUAL_BACKGROUND = ErrorSpec(  # manual mode in the background (D8, M2, M5)
    ATTEMPT_CANCELLED.code,
    ATTEMPT_CANCELLED.message,
    "The app is in the background, where the client does not connect by itself; call connect() again.",
)
# The live client (open_client).
CONNECT_OFFLINE = ErrorSpec(
    ERR_NETWORK_OFFLINE,
    "The device is offline.",
    "The client connects by itself when the platform reports the network back (network_restored).",
)
SEND_NOT_CONNECTED = ErrorSpec(
    ERR_NO_WEBSOCKET_CONNECTION,
    "No WebSocket connection.",
    "Call connect() and wait for it to succeed before sending a message.",
)
# D20: a send unanswered in time, or cut by the close of its socket (error.muid, error.may_be_stored).
SEND_TIMEOUT = ErrorSpec(
    ERR_SEND_TIMEOUT,
    "The server did not confirm the message in time.",
    "The server may have stored it: send it again with the same muid (error.muid) once connected; "
    "it is then delivered once.",
)
SEND_INTERRUPTED = ErrorSpec(
    ERR_SEND_INTERRUPTED,
    "The connection closed before the server confirmed the message.",
    "The server may have stored it: send it again with the same muid (error.muid) once connected; "
    "it is then delivered once.",
)
SEND_NEVER_LEFT = ErrorSpec(
    ERR_SEND_INTERRUPTED,
    "The connection closed before the message left the client.",
    "The server has not stored it: send it again once connected (the same muid, error.muid, is safe).",
)
FETCH_TIMEOUT = ErrorSpec(
    ERR_FETCH_TIMEOUT,
    "The server did not answer the history request in time.",
    "Call fetch_messages() again once connected.",
)
FETCH_INTERRUPTED = ErrorSpec(
    ERR_FETCH_INTERRUPTED,
    "The connection closed before the server answered the history request.",
    "Call fetch_messages() again once connected.",
)
INVALID_UID = ErrorSpec(
    ERR_INVALID_UID,
    "The user id is not valid.",
    "A uid is 1 to 100 characters: letters, digits, '_', '-' and '.'.",
)
LOGIN_FAILED = ErrorSpec(
    ERR_LOGIN_FAILED,
    "The login could not be completed.",
    "Check the server URL and the network, then log in again.",
)
LOGIN_CANCELLED = ErrorSpec(
    ERR_LOGIN_CANCELLED,
    "The login was cancelled.",
    "logout() or another login() replaced it before the server answered.",
)
CLIENT_CLOSED = ErrorSpec(
    ERR_CLIENT_CLOSED,
    "The client is closed.",
    "Open a new client with open_client(); a closed one accepts no calls.",
)
BAD_ARGUMENTS = ErrorSpec(
    ERR_INVALID_ARGUMENT,
    "The call's arguments do not fit.",
    "See the method's documentation for the accepted arguments.",
)
# connect() waited connect_timeout + 5 s and the attempt had not ended: a guard only, since the
# core ends every attempt within connect_timeout (P2).
CONNECT_TIMEOUT = ErrorSpec(
    ERR_CONNECT_TIMEOUT,
    "The connection attempt did not end in time.",
    "connect() stopped waiting; the client may still be trying: listen for on_connected, "
    "or call connect() again.",
)
# Misuse of the live client's calls: the code of BAD_ARGUMENTS, with what to do instead.
INVALID_TEXT = ErrorSpec(
    ERR_INVALID_ARGUMENT,
    "The message text is empty, too long or not valid Unicode.",
    "Send 1 to 16,384 characters whose JSON form is at most 61,440 bytes (an emoji counts 12, "
    "any other non-ASCII or control character 6) and no lone surrogate; split a longer text.",
)
LOGIN_ARGUMENTS = ErrorSpec(
    ERR_INVALID_ARGUMENT,
    "login() needs a uid with auth_key, or auth_token alone.",
    "Call login(uid, auth_key=...) or login(auth_token=...), with non-empty strings.",
)
INVALID_LISTENER_ID = ErrorSpec(
    ERR_INVALID_ARGUMENT,
    "The listener id is not valid.",
    "Pass a non-empty string that names the listener; remove_connection_listener() takes the same id.",
)
INVALID_MUID = ErrorSpec(
    ERR_INVALID_ARGUMENT,
    "The muid is not valid.",
    "A muid is 1 to 100 characters: letters, digits, '_', '.', ':' and '-'. Leave it out and the "
    "client makes one (Message.muid).",
)
INVALID_FETCH = ErrorSpec(
    ERR_INVALID_ARGUMENT,
    "fetch_messages() needs after_id >= 0 and a limit from 1 to 1000.",
    "Pass the id after which to read (0: from the oldest kept message) and a limit from 1 to 1000.",
)
INVALID_URL = ErrorSpec(
    ERR_INVALID_ARGUMENT,
    "The server URL is not valid.",
    "Pass url='ws://host:port' or 'wss://host:port', the address the server reports (server.url).",
)
