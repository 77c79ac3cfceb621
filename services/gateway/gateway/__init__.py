"""The gateway: the platform's one public entry (REST, auth, live events over SSE and WebSocket)."""
