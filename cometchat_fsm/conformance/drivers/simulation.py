"""Driver: the in-memory `Simulation` behind the driver protocol (`python -m
cometchat_fsm.conformance.drivers.simulation`). It proves the protocol: `conform` must find it conforming,
like `check` does in process. Its backoff draws come from `random.Random(seed)`, the same
stream as the protocol's `draws`.
"""

from __future__ import annotations

import sys
from typing import Any

from cometchat_fsm import places
from cometchat_fsm.conformance.drivers.pipe import serve, settings_of
from cometchat_fsm.core.settings import AppSettings
from cometchat_fsm.sim.script import Step, apply
from cometchat_fsm.sim.simulation import Simulation

#: Step word for each protocol command that differs from it.
WORDS = {"advance": "wait"}


class SimulationImplementation:
    name: str = "simulation"
    supports: tuple[str, ...] = (
        "login", "logout", "connect", "disconnect", "ping", "background", "foreground", "offline", "online",
        "restart", "advance", "drop", "silent", "reject", "throttle", "latency", "overload", "flap",
        "refuse", "busy")
    observes: tuple[str, ...] = ("results", "errors", "user", "stored", "sockets")

    def __init__(self, command: dict[str, Any]) -> None:
        auto, limit, seed = settings_of(command)
        self.version = f"cometchat-fsm {places.version()} Simulation"
        self.sim = Simulation(AppSettings(region="eu", auto_establish_socket_connection=auto,
                                          max_reconnect_attempts=limit), seed=seed)
        self.seen = 0
        self.last_status = self.sim.status.value

    def do(self, command: dict[str, Any]) -> str | None:
        name = command["cmd"]
        arg: Any = None
        if name == "login":
            arg = command.get("uid")
        elif name in ("advance", "latency"):
            arg = float(command.get("seconds", 0.0))
        elif name in ("flap", "busy"):
            seconds = command.get("seconds")
            arg = None if seconds is None else float(seconds)
        elif name in ("reject", "throttle", "refuse"):
            arg = bool(command.get("on"))
        elif name == "overload":
            hint = command.get("retry_after")
            arg = None if hint is None else float(hint)
        return apply(self.sim, Step(WORDS.get(name, name), arg))

    def events(self) -> list[dict[str, Any]]:
        fresh = self.sim.notifications[self.seen:]
        self.seen = len(self.sim.notifications)
        return [{"t": t, "notify": name} for t, name in fresh]

    def state(self) -> dict[str, Any]:
        return {"status": self.sim.status.value, "user": self.sim.logged_in_user,
                "stored": self.sim.stored_user, "sockets": self.sim.open_sockets}

    def close(self) -> None:
        pass


def main() -> int:
    return serve(SimulationImplementation)


if __name__ == "__main__":
    sys.exit(main())
