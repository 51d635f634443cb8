"""asyncio client for webconnect's real-time protocol (no Django needed)."""

from webconnect_client.client import Client, Message, ServerError, Subscription

__all__ = ["Client", "Message", "ServerError", "Subscription"]
