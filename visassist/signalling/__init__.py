"""WebSocket signalling: the typed protocol, the live rooms and the socket handler."""
