"""The peers' WebSocket (transfer/wire.py): chunk frames taken from one reused buffer, the
rest through websockets. A real server on 127.0.0.1 that writes frames byte by byte as a
test scripts them (hostile ones too), and the real client connection reading them."""

from __future__ import annotations

import asyncio
import struct

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError
from websockets.utils import accept_key

from conftest import bounded, run_async
from peers import Relay, fresh_nameplate
from xfer.loops import loop_factory
from xfer.protocol import Chunk, Text
from xfer.protocol.frames import MAX_BINARY_FRAME, encode_chunk
from xfer.transfer.connection import open_room
from xfer.transfer.wire import ChunkConnection

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, mask: bytes | None = None) -> bytes:
    """A server's frame as it goes on the wire (``mask``: a server must not mask; a hostile one does)."""
    first = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    masked = 0x80 if mask is not None else 0
    if n < 126:
        head = struct.pack("!BB", first, masked | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, masked | 126, n)
    else:
        head = struct.pack("!BBQ", first, masked | 127, n)
    if mask is not None:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


class Scripted:
    """A WebSocket server that answers the handshake, then writes what the test gives it."""

    def __init__(self) -> None:
        self.writer: asyncio.StreamWriter | None = None
        self.reader: asyncio.StreamReader | None = None
        self.ready = asyncio.Event()

    async def __aenter__(self) -> Scripted:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/ws"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.writer is not None:
            self.writer.close()
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip() for line in request.split(b"\r\n") if b"websocket-key:" in line.lower()
        )
        accept = accept_key(key.decode()).encode()
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self.reader, self.writer = reader, writer
        self.ready.set()

    async def open(self, **options: object) -> ChunkConnection:
        ws = await connect(
            self.url, compression=None, max_size=MAX_BINARY_FRAME, create_connection=ChunkConnection, **options
        )
        await asyncio.wait_for(self.ready.wait(), bounded(5))
        assert isinstance(ws, ChunkConnection)
        return ws

    async def write(self, data: bytes, pieces: int = 1) -> None:
        """``data`` in ``pieces`` writes, each one flushed and given time to arrive alone."""
        assert self.writer is not None
        step = max(1, -(-len(data) // pieces))
        for at in range(0, len(data), step):
            self.writer.write(data[at : at + step])
            await self.writer.drain()
            if pieces > 1:
                await asyncio.sleep(0.002)

    async def client_frame(self) -> tuple[int, bytes]:
        """The next frame the client sent (unmasked)."""
        assert self.reader is not None
        first, second = await asyncio.wait_for(self.reader.readexactly(2), bounded(5))
        n = second & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
        mask = await self.reader.readexactly(4)
        data = await self.reader.readexactly(n)
        return first & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def chunk(i: int, size: int = 256 * 1024) -> bytes:
    return encode_chunk(1, 2, 3, 0, i * size, bytes([i % 251]) * size)


async def next_of(ws: ChunkConnection) -> object:
    return await asyncio.wait_for(ws.next_frame(), bounded(5))


def test_chunks_split_across_many_reads_with_texts_and_pings_between_come_in_order_from_the_buffer():
    async def main():
        async with Scripted() as server:
            ws = await server.open(ping_interval=None)
            script = [
                frame(TEXT, b'{"one": 1}'),
                frame(BINARY, chunk(0)),
                frame(PING, b"are you there"),
                frame(BINARY, chunk(1)),
                frame(TEXT, b'{"two": 2}'),
                frame(BINARY, chunk(2, 100)),  # small: shares reads with its neighbours
                frame(BINARY, chunk(3)),
            ]
            writing = asyncio.ensure_future(server.write(b"".join(script), pieces=300))
            assert await next_of(ws) == '{"one": 1}'
            got = await next_of(ws)
            assert isinstance(got, memoryview) and got == chunk(0)  # a view of the buffer, not a copy
            got = await next_of(ws)
            assert isinstance(got, memoryview) and got == chunk(1)
            assert await server.client_frame() == (PONG, b"are you there")  # websockets answered the ping
            assert await next_of(ws) == '{"two": 2}'
            for i, size in ((2, 100), (3, 256 * 1024)):
                got = await next_of(ws)
                assert isinstance(got, memoryview) and got == chunk(i, size)
            await writing
            await ws.close()

    run_async(main())


def test_a_whole_chunk_before_a_truncated_frame_arrives_then_the_connection_is_closed():
    async def main():
        async with Scripted() as server:
            ws = await server.open(ping_interval=None)
            await server.write(frame(BINARY, chunk(0)) + frame(BINARY, chunk(1))[:100_000], pieces=20)
            assert server.writer is not None
            server.writer.close()
            assert await next_of(ws) == chunk(0)
            with pytest.raises(ConnectionClosedError) as caught:
                await next_of(ws)
            assert caught.value.rcvd is None  # no close frame: the relay's end dropped

        async with Scripted() as server:  # a whole chunk read before our end dropped is still handed out
            ws = await server.open(ping_interval=None)
            await server.write(frame(BINARY, chunk(0)))
            for _ in range(500):
                if ws._chunk is not None:
                    break
                await asyncio.sleep(0.01)
            ws.transport.abort()
            assert await next_of(ws) == chunk(0)
            with pytest.raises(ConnectionClosedError):
                await next_of(ws)

    run_async(main())


@pytest.mark.parametrize(
    "hostile, code",
    [
        (frame(BINARY, chunk(0)[:1000], fin=False) + frame(CONT, chunk(0)[1000:]), None),  # a fragmented chunk
        (frame(BINARY, b"x" * 10, rsv=0x40), 1002),  # an extension's bit nobody agreed on
        (frame(BINARY, b"x" * 10, mask=b"abcd"), 1002),  # a server must not mask
        (struct.pack("!BBQ", 0x82, 127, MAX_BINARY_FRAME + 1) + b"x" * 1000, 1009),  # over the limit, told upfront
    ],
    ids=["fragment", "rsv-bit", "masked", "over-the-limit"],
)
def test_frames_the_framing_does_not_expect_go_to_websockets_which_handles_them_as_before(hostile, code):
    async def main():
        async with Scripted() as server:
            ws = await server.open(ping_interval=None)
            await server.write(frame(BINARY, chunk(0)) + frame(TEXT, b"before"), pieces=5)
            assert await next_of(ws) == chunk(0)
            assert await next_of(ws) == "before"
            await server.write(hostile + frame(TEXT, b"after"), pieces=3)
            if code is None:  # a fragmented message is legal: websockets puts it together
                got = await next_of(ws)
                assert type(got) is bytes and got == chunk(0)
                assert await next_of(ws) == "after"
                await server.write(frame(BINARY, chunk(1)))
                assert await next_of(ws) == chunk(1)
                return
            opcode, data = await server.client_frame()  # websockets failed the connection: its close
            assert (opcode, data[:2]) == (CLOSE, struct.pack("!H", code))
            server.writer.close()  # as a relay does then
            with pytest.raises(ConnectionClosed) as caught:
                await next_of(ws)
            assert caught.value.sent is not None and caught.value.sent.code == code

    run_async(main())


def test_while_a_chunk_is_out_the_socket_is_not_read_and_the_buffer_stays_one_frame():
    async def main():
        async with Scripted() as server:
            ws = await server.open(ping_interval=None)
            flood = b"".join(frame(BINARY, chunk(i)) for i in range(64))  # 16 MiB
            writing = asyncio.ensure_future(server.write(flood))
            assert await next_of(ws) == chunk(0)
            await asyncio.sleep(0.3)  # the reader holds chunk 0: nothing more is taken in
            assert not writing.done()
            assert len(ws._buf) <= 2 * MAX_BINARY_FRAME
            for i in range(1, 64):
                assert await next_of(ws) == chunk(i)
                assert len(ws._buf) <= 2 * MAX_BINARY_FRAME
            await asyncio.wait_for(writing, bounded(5))
            await ws.close()

    run_async(main())


def test_a_receiver_gets_chunks_through_a_real_relay_as_views_on_both_event_loops():
    async def main():
        async with Relay() as relay:
            room = str(fresh_nameplate())
            a = await open_room(relay.url, room, role="sender", name="a", create=True)
            b = await open_room(relay.url, room, role="receiver", name="b", create=False)
            await asyncio.wait_for(a.recv(), bounded(5))  # b joined
            frames = [encode_chunk(a.peer_id, b.peer_id, 7, 0, i * 300_000, bytes([i]) * 300_000) for i in range(20)]
            for i, data in enumerate(frames):
                await a.send_frame(data)
                if i == 10:
                    await a.send(Text(to=b.peer_id, text="between"))
            for i, data in enumerate(frames):
                got = await asyncio.wait_for(b.recv(), bounded(5))
                assert isinstance(got, Chunk) and got.payload.obj is b.ws._buf and got.payload == data[28:]
                if i == 10:
                    text = await asyncio.wait_for(b.recv(), bounded(5))
                    assert isinstance(text, Text) and text.text == "between"
            await a.close()
            await b.close()

    run_async(main())
    factory = loop_factory()
    if factory is not None:  # the commands run on uvloop where it is installed
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(asyncio.wait_for(main(), bounded(30)))


def test_closing_with_a_chunk_out_and_more_behind_it_reads_on_to_the_relays_close():
    async def main():
        async with Scripted() as server:
            ws = await server.open(ping_interval=None)
            await server.write(b"".join(frame(BINARY, chunk(i, 1000)) for i in range(8)))  # several in one read
            got = await next_of(ws)
            closing = asyncio.ensure_future(ws.close())
            while (await server.client_frame())[0] != CLOSE:
                pass
            await server.write(frame(CLOSE, struct.pack("!H", 1000)))
            server.writer.close()  # a server closes the TCP connection after the closing handshake
            start = asyncio.get_running_loop().time()
            await asyncio.wait_for(closing, bounded(5))
            assert asyncio.get_running_loop().time() - start < 2  # not websockets' 10 s close timeout
            assert got == chunk(0, 1000)  # the view handed out is left as it was
            assert ws.close_code == 1000

    run_async(main())
