"""The relay: rooms, membership and forwarding; web page and WebSocket on one port.

Import this package only when a relay runs: it pulls in Starlette and uvicorn.
"""

from .app import WS_PATH, create_app
from .hub import Hub, RelayLimits
from .server import RelayServer, bind_socket

__all__ = ["WS_PATH", "Hub", "RelayLimits", "RelayServer", "bind_socket", "create_app"]
