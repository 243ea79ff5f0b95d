"""The reference server's control channel (docs/control-channel.md, version 2): its scripted
faults over JSON Lines on a loopback TCP port, so that a client in any language can replay the
conformance vectors that need server faults against the real server.

`cometchat-fsm serve --control PORT` opens it; `open_control(server, port)` does the same from
Python. Each line is one command, `{"id": N, "cmd": NAME, ...}`; each gets one answer line,
`{"id": N, "ok": true, "result": ...}` or `{"id": N, "ok": false, "error": CODE, "message": ...}`,
in order. The commands are named after the trace format's server inputs
(specs/trace-format.md), and call the server's own fault methods (server/reference.py).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from cometchat_fsm.core.errors import (
    ERR_BAD_COMMAND,
    ERR_UNKNOWN_COMMAND,
    ERR_UNKNOWN_USER,
    ERR_UNSUPPORTED,
    CometChatException,
)
from cometchat_fsm.server.reference import ReferenceServer

#: 2 added server_latency, server_refuse_login and server_busy (answered ERR_UNSUPPORTED in 1);
#: every command of 1 is unchanged.
CONTROL_VERSION = 2
#: The longest command line, in bytes: a longer one is answered with ERR_BAD_COMMAND and the
#: connection closed (its end cannot be found without reading on unboundedly).
MAX_LINE = 64 * 1024
#: Control connections served at once; more wait for the listener's backlog.
MAX_CONNECTIONS = 8
#: Trace inputs the reference server cannot play, and why (the trace format's names): none since
#: version 2; `hello` still lists them, for version 1 clients.
UNSUPPORTED: dict[str, str] = {}


class _Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code, self.message = code, message


def _flag(command: dict[str, Any]) -> bool:
    flag = command.get("flag", True)
    if not isinstance(flag, bool):
        raise _Refused(ERR_BAD_COMMAND, '"flag" must be true or false')
    return flag


def _uids(server: ReferenceServer, command: dict[str, Any]) -> list[str]:
    """The user named by "uid", or every user when it is absent."""
    uid = command.get("uid")
    if uid is None:
        return sorted(server.users)
    if not isinstance(uid, str) or uid not in server.users:
        raise _Refused(ERR_UNKNOWN_USER, f"no user {uid!r} on this server")
    return [uid]


def _seconds(value: object, name: str, *, required: bool = False) -> float | None:
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0:
        raise _Refused(ERR_BAD_COMMAND, f'"{name}" must be a number of seconds >= 0'
                                        + ("" if required else " or null"))
    return float(value)


async def _run(server: ReferenceServer, command: dict[str, Any]) -> object:
    """Carry out one command; its result (JSON), or _Refused."""
    name = command.get("cmd")
    match name:
        case "hello":
            return {"version": CONTROL_VERSION, "commands": sorted(COMMANDS), "unsupported": UNSUPPORTED,
                    "users": sorted(server.users)}
        case "server_drop":  # the sockets closed
            return sum(server.drop(uid) for uid in _uids(server, command))
        case "server_silent":  # the sockets made half-open (flag false: cut)
            return sum(server.silence(uid, _flag(command)) for uid in _uids(server, command))
        case "server_reject_auth":
            server.reject_auth(_flag(command))
        case "server_throttle":
            for uid in _uids(server, command):
                server.throttle(uid, _flag(command))
        case "server_overloaded":
            server.overload(_seconds(command.get("retry_after"), "retry_after"))
        case "server_restart":
            await server.restart()
        case "server_flap":  # each socket closed this long after its auth was accepted (D14)
            server.flap(_seconds(command.get("seconds"), "seconds"))
        case "server_latency":  # logins, sockets and keep-alives answered this late (D5, P2)
            server.latency(_seconds(command.get("seconds"), "seconds", required=True) or 0.0)
        case "server_refuse_login":  # every login answered with an error (D16)
            server.refuse_login(_flag(command))
        case "server_busy":  # keep-alives' pongs this late, behind a data frame (D17)
            server.busy(_seconds(command.get("seconds"), "seconds"))
        case "refuse_handshakes":
            server.refuse(_flag(command))
        case "add_user":
            server.add_user(command.get("uid"))  # type: ignore[arg-type]  # checked by the server
        case "revoke":
            for uid in _uids(server, command):
                server.revoke(uid)
        case "open_sockets":
            who = command.get("uid")
            return server.open_sockets(who if isinstance(who, str) else None)
        case _ if name in UNSUPPORTED:
            raise _Refused(ERR_UNSUPPORTED, f"{name}: {UNSUPPORTED[str(name)]}")
        case _:
            raise _Refused(ERR_UNKNOWN_COMMAND, f"unknown cmd {str(name)[:40]!r}; send hello for the list")
    return None


COMMANDS = frozenset(("hello", "server_drop", "server_silent", "server_reject_auth", "server_throttle",
                      "server_overloaded", "server_restart", "server_flap", "server_latency",
                      "server_refuse_login", "server_busy", "refuse_handshakes", "add_user", "revoke",
                      "open_sockets"))


async def answer(server: ReferenceServer, line: bytes) -> dict[str, Any]:
    """The answer to one command line (never raises for bad input)."""
    try:
        command = json.loads(line)
    except (ValueError, RecursionError):
        return {"id": None, "ok": False, "error": ERR_BAD_COMMAND, "message": "not a JSON object"}
    if not isinstance(command, dict):
        return {"id": None, "ok": False, "error": ERR_BAD_COMMAND, "message": "not a JSON object"}
    ident = command.get("id")
    ident = ident if isinstance(ident, (int, str)) and not isinstance(ident, bool) else None
    try:
        return {"id": ident, "ok": True, "result": await _run(server, command)}
    except _Refused as exc:
        return {"id": ident, "ok": False, "error": exc.code, "message": exc.message}
    except (CometChatException, ValueError) as exc:  # the server's own refusal of an argument
        code = exc.code if isinstance(exc, CometChatException) else "ERR_BAD_COMMAND"
        return {"id": ident, "ok": False, "error": code, "message": str(exc)}


async def _serve_connection(server: ReferenceServer, stream: trio.SocketStream) -> None:
    buffer = b""
    async with stream:
        while True:
            newline = buffer.find(b"\n")
            if newline > MAX_LINE or (newline < 0 and len(buffer) > MAX_LINE):
                reply = {"id": None, "ok": False, "error": ERR_BAD_COMMAND,
                         "message": f"a line longer than {MAX_LINE} bytes"}
                await stream.send_all(json.dumps(reply).encode() + b"\n")
                return
            if newline < 0:
                data = await stream.receive_some(MAX_LINE)
                if not data:
                    return
                buffer += data
                continue
            line, buffer = buffer[:newline], buffer[newline + 1:]
            if line.strip():
                await stream.send_all(json.dumps(await answer(server, line)).encode() + b"\n")


@asynccontextmanager
async def open_control(server: ReferenceServer, port: int = 0) -> AsyncIterator[int]:
    """Serve the control channel on 127.0.0.1:`port` (0: a free one) for the block's duration;
    yields the bound port. Loopback only: whoever reaches it can fault the server."""
    limit = trio.CapacityLimiter(MAX_CONNECTIONS)

    async def handler(stream: trio.SocketStream) -> None:
        async with limit:
            try:
                await _serve_connection(server, stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the controller went away

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, port, host="127.0.0.1"))
        yield int(listeners[0].socket.getsockname()[1])
        nursery.cancel_scope.cancel()
