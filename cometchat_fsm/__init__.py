"""cometchat-fsm: the CometChat WebSocket connection lifecycle as one explicit, checked state
machine (`lifecycle`), a virtual-time `Simulation` over it, and conformance checks."""

from .errors import CometChatException
from .events import Timer
from .model import ClientModel
from .settings import AppSettings, Mode, init
from .simulation import Simulation
from .states import AppState, ConnectionStatus, Network, Phase

__all__ = [
    "AppSettings",
    "AppState",
    "ClientModel",
    "CometChatException",
    "ConnectionStatus",
    "Mode",
    "Network",
    "Phase",
    "Simulation",
    "Timer",
    "init",
]
__version__ = "0.1.0"
