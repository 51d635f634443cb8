"""The text form of a rate limit ("20/second;600/minute"), parsed with `limits`."""

from __future__ import annotations

from limits import RateLimitItem, parse


def parse_limits(spec: str) -> list[RateLimitItem]:
    """'20/second;600/minute' -> items; ValueError with a message naming the bad part."""
    parts = [part.strip() for part in spec.replace(",", ";").split(";") if part.strip()]
    if not parts:
        raise ValueError('give at least one limit, e.g. "20/second;600/minute"')
    items = []
    for part in parts:
        try:
            item = parse(part)
        except ValueError:
            raise ValueError(
                f'{part!r} is not a limit: write <count>/<unit>, e.g. "20/second" or "600/minute"'
            ) from None
        if item.amount < 1:
            raise ValueError(f"{part!r}: the count must be at least 1 (disable the policy instead)")
        items.append(item)
    return items
