"""Django Channels: Django's HTTP views (:mod:`frameworks.django_app`) and a WebSocket consumer
in one ProtocolTypeRouter, with channels_redis as the channel layer, so a group message sent on
one asgiws process reaches the members connected to another.

The consumer joins the group "room" before it accepts; a text message is echoed, a JSON object
is echoed as JSON, ``{"broadcast": TEXT}`` goes to the whole group, "bye" closes with 4000
"see you", and a client's close code and reason are told to the group."""

from __future__ import annotations

import json
import os
from typing import Any, ClassVar

from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "frameworks.django_settings")

from frameworks.django_app import application as django_http  # after the settings module is named

GROUP = "room"


class RoomConsumer(AsyncWebsocketConsumer):
    groups: ClassVar[list[str]] = [GROUP]  # joined before connect() runs, left on disconnect

    async def connect(self) -> None:
        offered = self.scope["subprotocols"]
        await self.accept("chat" if "chat" in offered else None)
        layer = type(self.channel_layer).__name__
        await self.send(text_data=json.dumps({"layer": layer, "pid": os.getpid()}))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data == "bye":
            await self.close(code=4000, reason="see you")
        elif text_data is not None and text_data.startswith("{"):
            content = json.loads(text_data)
            if "broadcast" in content:
                event = {"type": "room.message", "text": content["broadcast"]}
                await self.channel_layer.group_send(GROUP, event)
            else:
                await self.send(text_data=json.dumps({"echo": content}))
        else:
            await self.send(text_data=f"echo: {text_data}")

    async def room_message(self, event: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps({"broadcast": event["text"], "pid": os.getpid()}))

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        said = f"disconnect {message['code']} {message.get('reason', '')}"
        await self.channel_layer.group_send(GROUP, {"type": "room.message", "text": said})
        await super().websocket_disconnect(message)


application = ProtocolTypeRouter(
    {
        "http": django_http,
        "websocket": URLRouter([path("ws", RoomConsumer.as_asgi())]),
    }
)
