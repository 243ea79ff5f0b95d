"""A deliberately broken driver for the tests: the Simulation behind the driver protocol, except
that `disconnect()` keeps quiet about it: its `on_disconnected` is never reported and the status
is still shown as "connected" (as the JS SDK does, D1). `conform` must find and name D1."""

from __future__ import annotations

import sys
from typing import Any

from cometchat_fsm.conformance.drivers.pipe import serve
from cometchat_fsm.conformance.drivers.simulation import SimulationImplementation


class QuietDisconnect(SimulationImplementation):
    name = "broken-simulation"

    def __init__(self, command: dict[str, Any]) -> None:
        super().__init__(command)
        self.hidden: set[int] = set()  # indexes of notifications never reported
        self.pretend_connected = False

    def do(self, command: dict[str, Any]) -> str | None:
        before = len(self.sim.notifications)
        was = self.sim.status.value
        result = super().do(command)
        if command["cmd"] == "disconnect" and was == "connected":
            self.hidden.update(range(before, len(self.sim.notifications)))
            self.pretend_connected = True
        elif self.sim.status.value != "disconnected":
            self.pretend_connected = False
        return result

    def events(self) -> list[dict[str, Any]]:
        fresh = [{"t": t, "notify": name} for i, (t, name) in enumerate(self.sim.notifications)
                 if i >= self.seen and i not in self.hidden]
        self.seen = len(self.sim.notifications)
        return fresh

    def state(self) -> dict[str, Any]:
        state = super().state()
        if self.pretend_connected:
            state["status"] = "connected"
        return state


if __name__ == "__main__":
    sys.exit(serve(QuietDisconnect))
