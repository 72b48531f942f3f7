"""asgiws: a WebSocket-first ASGI server for HTTP/1.1 and RFC 6455 WebSocket."""

__version__ = "0.1.0"
