"""A driver for the tests that diverges on one known rule only: the Simulation behind the driver
protocol, except that `connect()` without a signed-in user does not fail with ERR_NOT_LOGGED_IN
(E1) but starts connecting: `on_connecting` at once and the status "connecting", until the next
input (as the JS SDK does while another user's login is under way: its `connect()` still sees the
previous user). Run with E1 known, `conform` must blame what follows from that answer on E1, not
on another rule."""

from __future__ import annotations

import sys
from typing import Any

from cometchat_fsm.conformance.drivers.pipe import serve
from cometchat_fsm.conformance.drivers.simulation import SimulationImplementation


class EagerConnect(SimulationImplementation):
    name = "eager-connect"

    def __init__(self, command: dict[str, Any]) -> None:
        super().__init__(command)
        self.pretend_connecting = False
        self.extra: list[dict[str, Any]] = []

    def do(self, command: dict[str, Any]) -> str | None:
        self.pretend_connecting = False
        if command["cmd"] == "connect" and self.sim.logged_in_user is None:
            self.pretend_connecting = True
            self.extra.append({"t": self.sim.now, "notify": "on_connecting"})
            return None
        return super().do(command)

    def events(self) -> list[dict[str, Any]]:
        fresh, self.extra = [*super().events(), *self.extra], []
        return fresh

    def state(self) -> dict[str, Any]:
        state = super().state()
        if self.pretend_connecting:
            state["status"] = "connecting"
        return state


if __name__ == "__main__":
    sys.exit(serve(EagerConnect))
