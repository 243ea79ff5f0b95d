"""Client models in a known phase, for the tests of the core."""

from __future__ import annotations

from cometchat_fsm.core.events import AuthAccepted, Connect, Login, LoginVerified
from cometchat_fsm.core.model import ClientModel
from cometchat_fsm.core.settings import AppSettings
from cometchat_fsm.core.states import Phase


def connected(settings: AppSettings) -> ClientModel:
    """A model logged in as alice and connected (any mode), its backoff draws fixed at 0.5."""
    m = ClientModel(settings, random=lambda: 0.5)
    m.handle(Login("alice"))
    m.handle(LoginVerified())
    if m.phase is not Phase.CONNECTING:
        m.handle(Connect())
    assert m.socket is not None
    m.handle(AuthAccepted(m.socket))
    assert m.phase is Phase.CONNECTED
    return m
