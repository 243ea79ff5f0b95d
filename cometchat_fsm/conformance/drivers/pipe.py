"""The driver's side of the driver protocol (specs/driver-protocol.md), for drivers in Python.

`serve(make)` reads one JSON command a line from stdin and writes one JSON answer a line to
stdout; diagnostics go to stderr. `make(init)` builds an `Implementation` for each `init` and
`reset` (a fresh client in the same process). An implementation reports the listener calls and
status changes since the previous answer through `events()` and its current state through
`state()`; an app call that fails raises `CometChatException` and the answer carries its code.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import IO, Any, Protocol

from cometchat_fsm.core.errors import ERR_BAD_COMMAND, ERR_UNSUPPORTED, CometChatException

PROTOCOL_VERSION = 1


class Implementation(Protocol):
    """One client and its fake server in virtual time; `do` carries out one command."""

    name: str
    version: str
    supports: tuple[str, ...]
    observes: tuple[str, ...]

    def do(self, command: dict[str, Any]) -> str | None: ...
    def events(self) -> list[dict[str, Any]]: ...
    def state(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


def serve(make: Callable[[dict[str, Any]], Implementation], *, stdin: IO[str] | None = None,
          stdout: IO[str] | None = None) -> int:
    """Answer commands until `quit` or the end of stdin; return the exit status (0)."""
    source = stdin or sys.stdin
    sink = stdout or sys.stdout
    impl: Implementation | None = None

    def answer(message: dict[str, Any]) -> None:
        sink.write(json.dumps(message, separators=(",", ":")) + "\n")
        sink.flush()

    for line in source:
        if not line.strip():
            continue
        try:
            command = json.loads(line)
        except json.JSONDecodeError as exc:
            print(f"driver: not JSON: {exc}", file=sys.stderr)
            answer({"id": None, "ok": False, "error": {"code": ERR_BAD_COMMAND, "details": str(exc)}})
            continue
        ident, name = command.get("id"), command.get("cmd")
        if name == "quit":
            break
        try:
            if name in ("init", "reset"):
                if impl is not None:
                    impl.close()
                impl = make(command)
                reply: dict[str, Any] = {"id": ident, "ok": True, "events": impl.events(),
                                         "state": impl.state()}
                if name == "init":
                    reply.update(protocol=PROTOCOL_VERSION, driver=impl.name, implementation=impl.version,
                                 supports=list(impl.supports), observes=list(impl.observes),
                                 settings=["max_reconnect_attempts"])
                answer(reply)
                continue
            if impl is None:
                raise CometChatException(ERR_BAD_COMMAND, "init first", f"{name!r} before init")
            if name not in impl.supports:
                raise CometChatException(ERR_UNSUPPORTED, "not supported", f"{name!r}")
            result = impl.do(command)
            answer({"id": ident, "ok": True, "result": result, "events": impl.events(),
                    "state": impl.state()})
        except CometChatException as exc:
            events = impl.events() if impl is not None else []
            state = impl.state() if impl is not None else {}
            answer({"id": ident, "ok": False, "error": {"code": exc.code, "message": exc.message,
                                                        "details": exc.details},
                    "events": events, "state": state})
    if impl is not None:
        impl.close()
    return 0


def settings_of(command: dict[str, Any]) -> tuple[bool, int | None, int]:
    """(auto mode, max_reconnect_attempts, seed) from an `init` / `reset` command."""
    auto = command.get("mode", "auto") == "auto"
    limit = (command.get("settings") or {}).get("max_reconnect_attempts")
    return auto, limit if isinstance(limit, int) else None, int(command.get("seed", 0))
