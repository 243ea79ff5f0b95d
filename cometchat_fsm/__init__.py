"""cometchat-fsm: the CometChat WebSocket connection lifecycle as one explicit, checked state
machine (`lifecycle`), a virtual-time `Simulation` over it, and conformance checks."""

from .client import Client, ConnectedInfo, Message, User, open_client
from .errors import CometChatException, SendFailed
from .events import Timer
from .history import Retention
from .model import ClientModel
from .server import ReferenceServer, serve_reference
from .settings import AppSettings, Mode, init
from .simulation import Simulation
from .states import AppState, ConnectionStatus, Network, Phase

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
