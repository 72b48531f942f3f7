"""Sans-IO WebSocket frame codec for the server side of RFC 6455 (and RFC 7692 compression).

INTERFACE CONTRACT (protocol.py codes against exactly this; keep it):

    codec = FrameCodec(max_size=16 * 1024 * 1024, deflate=None | PerMessageDeflate)
    events = codec.receive_data(data)   # -> list[Event], in wire order
    codec.encode_message(data)          # str -> text frame, bytes -> binary frame; -> bytes
    codec.encode_ping(payload)          # -> bytes
    codec.encode_pong(payload)          # -> bytes
    codec.encode_close(code, reason)    # code None -> empty close payload; -> bytes

Events:
    Message(data: str | bytes)   a complete, reassembled, validated, decompressed message
    Ping(payload: bytes)         the caller answers with encode_pong(payload)
    Pong(payload: bytes)
    CloseReceived(code, reason)  the peer's Close; code 1005 when the frame had no payload.
                                 Parsing stops after it: later bytes are ignored.
    ProtocolFailure(code, reason) the peer broke the protocol (1002), sent invalid UTF-8 (1007)
                                 or too big a message (1009). Parsing stops after it. Everything
                                 that was complete before the bad frame is returned ahead of it.

Nothing in this module imports asyncio or reads a clock.
"""

from __future__ import annotations

# Implementation: see the helper's work. This file is a placeholder for the interface.
