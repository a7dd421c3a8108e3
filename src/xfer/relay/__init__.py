"""The relay: rooms, membership and forwarding; web page and WebSocket on one port.

Import this package only when a relay runs: it pulls in Starlette and uvicorn.
"""

from ..protocol.limits import Limits as RelayLimits  # the relay reads the relay's part of the one Limits
from ..protocol.room import Room
from .app import WS_PATH, Relay, create_app
from .buses import Bus, LocalBus
from .server import RelayServer, bind_socket

Hub = Room  # the name the rooms had before they became a machine

__all__ = [
    "WS_PATH",
    "Bus",
    "Hub",
    "LocalBus",
    "Relay",
    "RelayLimits",
    "RelayServer",
    "Room",
    "bind_socket",
    "create_app",
]
