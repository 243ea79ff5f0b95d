"""The asyncio front end: `open_client` with the same API as the trio one, on the `websockets`
library (the `asyncio` extra: pip install 'cometchat-fsm[asyncio]'), and `serve_reference`,
the trio reference server in a thread for asyncio programs.

    import asyncio
    from cometchat_fsm.asyncio import AppSettings, open_client, serve_reference
"""

from __future__ import annotations

from cometchat_fsm.asyncio.client import Client, Connector, open_client, url_connector
from cometchat_fsm.asyncio.server import ThreadedServer, serve_reference
from cometchat_fsm.core.errors import CometChatException, SendFailed
from cometchat_fsm.core.settings import AppSettings, Mode
from cometchat_fsm.core.states import ConnectionStatus
from cometchat_fsm.session.listeners import ConnectionListener
from cometchat_fsm.session.values import ConnectedInfo, Message, StatusChange, User

__all__ = [
    "AppSettings",
    "Client",
    "CometChatException",
    "ConnectedInfo",
    "ConnectionListener",
    "ConnectionStatus",
    "Connector",
    "Message",
    "Mode",
    "SendFailed",
    "StatusChange",
    "ThreadedServer",
    "User",
    "open_client",
    "serve_reference",
    "url_connector",
]
