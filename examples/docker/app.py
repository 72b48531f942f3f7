"""A FastAPI app for the image that examples/docker/Dockerfile builds: an HTTP route, a health
route for a readiness probe, and a WebSocket that echoes text and answers JSON with JSON."""

from __future__ import annotations

import json
import os
from typing import Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

app = FastAPI(title="asgiws example")


@app.get("/")
async def hello() -> dict[str, Any]:
    return {"hello": "from FastAPI on asgiws", "uid": os.getuid()}


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.websocket("/ws")
async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            if text.startswith("{"):
                await websocket.send_json({"echo": json.loads(text)})
            else:
                await websocket.send_text(f"echo: {text}")
    except WebSocketDisconnect:
        pass
