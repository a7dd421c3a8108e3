"""A peer inside the relay's process (the embedded relay) joins without a socket: its
frames pass through the same routing and checks, and the data crosses one socket."""

from __future__ import annotations

import asyncio

import pytest

from conftest import make_file, run_async, sha256_of
from peers import Events, fresh_nameplate, secure, yes
from xfer.errors import PeerProtocolError, RoomError
from xfer.protocol.words import new_code
from xfer.relay import RelayServer, bind_socket
from xfer.relay.local import open_local
from xfer.transfer.connection import open_room
from xfer.transfer.receiver import Receiver
from xfer.transfer.sender import Sender, check_sources


@pytest.mark.parametrize("local_side", ["sender", "receiver"])
def test_transfer_between_a_local_peer_and_a_socket_peer(tmp_path, local_side):
    src = make_file(tmp_path / "a.bin", 5_000_000, 3)
    out = tmp_path / "out"
    out.mkdir()

    async def main():
        server = RelayServer(bind_socket("127.0.0.1", 0))
        await server.start()
        relay = server.app.state.relay
        room = fresh_nameplate()
        code = new_code(int(room))
        try:

            async def join(role, create):
                if role == local_side:
                    inner = await open_local(relay, room, role=role, name="", create=create)
                else:
                    url = f"ws://127.0.0.1:{server.port}/ws"
                    inner = await open_room(url, room, role=role, name="", create=create)
                return await secure(inner, role, code)

            s = await join("sender", True)
            r = await join("receiver", False)
            sockets = len(server.server.server_state.connections)
            await asyncio.gather(Sender(s, check_sources([src]), Events()).run(), Receiver(r, out, Events(), yes).run())
            await s.close(), await r.close()
            return sockets
        finally:
            await server.stop()

    sockets = run_async(main())
    assert sockets == 1  # only the other peer's WebSocket
    assert sha256_of(out / "a.bin") == sha256_of(src)


def test_a_local_peer_is_checked_like_any_other():
    async def main():
        server = RelayServer(bind_socket("127.0.0.1", 0))
        await server.start()
        relay = server.app.state.relay
        try:
            with pytest.raises(RoomError):
                await open_local(relay, fresh_nameplate(), role="receiver", name="x", create=False)
            conn = await open_local(relay, fresh_nameplate(), role="sender", name="x", create=True)
            with pytest.raises(PeerProtocolError, match="relay closed"):  # a chunk naming nobody as its sender
                await conn.send_frame(b"\x01" + b"\x00" * 27)
            with pytest.raises(PeerProtocolError, match="relay closed"):
                await asyncio.wait_for(conn.recv(), 5)
        finally:
            await server.stop()

    run_async(main())
