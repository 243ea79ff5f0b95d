"""A connection listener for the live client's tests, shared by the test modules."""

from __future__ import annotations

import trio

from cometchat_fsm import CometChatException


class Recorder:
    """A connection listener that notes (virtual time, name)."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str]] = []
        self.errors: list[CometChatException] = []

    def _note(self, name: str) -> None:
        self.calls.append((round(trio.current_time(), 6), name))

    def on_connecting(self) -> None:
        self._note("on_connecting")

    def on_connected(self) -> None:
        self._note("on_connected")

    def on_disconnected(self) -> None:
        self._note("on_disconnected")

    def on_feature_throttled(self) -> None:
        self._note("on_feature_throttled")

    def on_connection_error(self, exc: CometChatException) -> None:
        self._note("on_connection_error")
        self.errors.append(exc)

    @property
    def names(self) -> list[str]:
        return [n for _, n in self.calls]
