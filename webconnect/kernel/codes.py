"""WebSocket close codes, the same on every endpoint (docs/protocol.md, docs/collab.md).

Only 1000 and 3000-4999 reach the wire through Daphne (autobahn refuses to send
1009/1011 from an application), so every refusal is an application code.
Convention, shared with y-websocket clients: 4400-4499 do not retry, 4500-4599
retry after a pause, 4000-4099 are the real-time endpoint's own.
"""

from __future__ import annotations

NORMAL = 1000
IDLE = 4000  # nothing received for the idle timeout
SLOW_CONSUMER = 4001  # the outgoing queue filled up: reconnect and recover with `since`
REVOKED = 4002  # signed out, token revoked or expired: authenticate again
INVALID = 4400  # a frame the protocol refuses
UNAUTHORIZED = 4401
FORBIDDEN = 4403
TOO_LARGE = 4413
TOO_MANY_CONNECTIONS = 4429
SERVER_ERROR = 4500  # a server bug; retry
GOING_AWAY = 4501  # this process is shutting down: reconnect (to another process)
UNAVAILABLE = 4503  # storage (database or Redis) unavailable: reconnect and re-send
PERMISSIONS_CHANGED = 4509  # rights changed: reconnect to get the new ones
RESYNC = 4510  # the client built on changes this server does not have yet: reconnect and sync again
RATE_LIMITED = 4529

RETRYABLE = frozenset({SLOW_CONSUMER, SERVER_ERROR, GOING_AWAY, UNAVAILABLE, PERMISSIONS_CHANGED, RESYNC, RATE_LIMITED})


def wire_code(code: int) -> int:
    """A code that reaches the client: anything Daphne would swallow becomes SERVER_ERROR."""
    return code if code == NORMAL or 3000 <= code <= 4999 else SERVER_ERROR
