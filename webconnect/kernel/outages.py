"""What counts as a storage outage (the database or Redis down) rather than a bug.

An outage is answered with something the client can retry (close 4503, an
`unavailable` error frame); a bug with 4500 / `internal`. Every layer asks the
same question here, so the answer is one.
"""

from __future__ import annotations

import redis
from django.db import DatabaseError

from webconnect.kernel.bus import BusUnavailable


def is_unavailable(exc: BaseException) -> bool:
    """A storage outage (database or Redis) rather than a bug: the client should retry."""
    return isinstance(exc, BusUnavailable | DatabaseError | OSError | TimeoutError | redis.RedisError)
