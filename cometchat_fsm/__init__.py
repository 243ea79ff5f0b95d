"""cometchat-fsm: the CometChat WebSocket connection lifecycle as one explicit, checked state
machine (`lifecycle`), a virtual-time `Simulation` over it, and conformance checks."""

from cometchat_fsm.core.errors import CometChatException, SendFailed
from cometchat_fsm.core.events import Timer
from cometchat_fsm.core.model import ClientModel
from cometchat_fsm.core.settings import AppSettings, Mode, init
from cometchat_fsm.core.states import AppState, ConnectionStatus, Network, Phase
from cometchat_fsm.server.history import Retention
from cometchat_fsm.server.reference import ReferenceServer, serve_reference
from cometchat_fsm.sim.simulation import Simulation
from cometchat_fsm.trio.client import Client, ConnectedInfo, Message, User, open_client

__all__ = [
    "AppSettings",
    "AppState",
    "Client",
    "ClientModel",
    "CometChatException",
    "ConnectedInfo",
    "ConnectionStatus",
    "Message",
    "Mode",
    "Network",
    "Phase",
    "ReferenceServer",
    "Retention",
    "SendFailed",
    "Simulation",
    "Timer",
    "User",
    "init",
    "open_client",
    "serve_reference",
]
__version__ = "0.1.0"
