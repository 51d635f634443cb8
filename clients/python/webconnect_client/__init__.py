"""asyncio client for webconnect's real-time protocol (no Django needed)."""

from webconnect_client.client import Client, Disconnected, HandshakeRefused, Message, ServerError, Subscription

__all__ = ["Client", "Disconnected", "HandshakeRefused", "Message", "ServerError", "Subscription"]
