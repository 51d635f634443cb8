"""Daphne with the limits from settings, a lean send path, and a graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any

from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept
from daphne.cli import CommandLineInterface
from daphne.http_protocol import HTTPFactory
from daphne.server import Server
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
from django.conf import settings
from twisted.internet import defer

from webconnect.kernel import startup
from webconnect.servers import BACKLOG, PING_INTERVAL, PING_TIMEOUT, application_path

logger = logging.getLogger(__name__)


class HeaderDeadline:
    """Close an HTTP connection whose request line and headers are not complete in time.

    Twisted's `HTTPChannel.timeOut` is an idle timeout, reset by every byte received: a client
    that trickles one header line every few seconds (slowloris) never trips it. This is a
    deadline instead, started when the connection opens and again after each response on a
    kept-alive connection, and cancelled once the headers are in (a WebSocket upgrade is then
    bounded by Daphne's `--websocket_connect_timeout`).
    """

    def __init__(self, channel: Any, seconds: float) -> None:
        self.channel = channel
        self.seconds = seconds
        self.call: Any = None
        connection_made, all_headers, request_done, connection_lost = (
            channel.connectionMade,
            channel.allHeadersReceived,
            channel.requestDone,
            channel.connectionLost,
        )

        # Instance attributes: HTTPChannel calls these through self, the wrapping protocol through _channel.
        def on_connection_made() -> None:
            connection_made()
            self.start()

        def on_all_headers_received() -> None:
            self.cancel()
            all_headers()

        def on_request_done(request: Any) -> None:
            request_done(request)
            if channel.persistent and not channel._handlingRequest:
                self.start()  # the next request's headers get the same deadline

        def on_connection_lost(reason: Any) -> None:
            self.cancel()
            connection_lost(reason)

        channel.connectionMade = on_connection_made
        channel.allHeadersReceived = on_all_headers_received
        channel.requestDone = on_request_done
        channel.connectionLost = on_connection_lost

    def start(self) -> None:
        self.cancel()
        self.call = self.channel.callLater(self.seconds, self.expire)  # TimeoutMixin: the reactor's clock

    def cancel(self) -> None:
        if self.call is not None and self.call.active():
            self.call.cancel()
        self.call = None

    def expire(self) -> None:
        self.call = None
        transport = self.channel.transport
        if transport is None:
            return
        logger.info("closing %s: request headers not complete within %ss", transport.getPeer(), self.seconds)
        transport.abortConnection()


class DeadlineHTTPFactory(HTTPFactory):  # type: ignore[misc]
    """Daphne's HTTP factory with an idle timeout and a header deadline from settings."""

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        # Sets the idle timeout on the HTTP/1.1 channel the generic protocol wraps.
        protocol.timeOut = settings.HTTP_IDLE_TIMEOUT
        HeaderDeadline(protocol._channel, settings.HTTP_HEADER_TIMEOUT)
        return protocol


def offers_credential(request: Any) -> bool:
    """Whether an upgrade request carries anything webconnect.handshake could authenticate."""
    headers = request.headers  # autobahn lower-cases the names
    if "authorization" in headers or "ticket" in request.params:
        return True
    return f"{settings.SESSION_COOKIE_NAME}=" in headers.get("cookie", "")


class CappedWebSocketProtocol(WebSocketProtocol):  # type: ignore[misc]
    """A socket that arrives without any credential may only send small messages, at the transport.

    Autobahn buffers a message until it is complete, up to the server-wide
    WEBSOCKET_MAX_MESSAGE_SIZE (4 MiB): without this, each anonymous socket could hold that much
    in unfinished messages. The cap is four times REALTIME_ANONYMOUS_MAX_FRAME_BYTES, so a frame
    just over the application's limit still gets its 4413 close with a reason, and anything
    larger is cut (1009) while it arrives.
    """

    def onConnect(self, request: Any) -> Any:
        if not offers_credential(request):
            cap = 4 * settings.REALTIME_ANONYMOUS_MAX_FRAME_BYTES
            # Read per message by autobahn, copied from the factory when the connection was made.
            for option in ("maxMessagePayloadSize", "maxFramePayloadSize"):
                setattr(self, option, min(getattr(self, option) or cap, cap))
        return super().onConnect(request)

    def handle_reply(self, message: Any) -> None:
        # Daphne tests `if message.get("text")`, so an empty message is silently dropped; send it.
        if message.get("type") == "websocket.send" and self.state == self.STATE_OPEN:
            text, data = message.get("text"), message.get("bytes")
            if text is not None and data is not None:
                raise ValueError("a websocket.send message has both text and bytes")
            if data is not None:
                self.serverSend(data, True)
            elif text is not None:
                self.serverSend(text, False)
            return
        super().handle_reply(message)

    def serverSend(self, content: Any, binary: bool = False) -> None:
        """Frame and write a message in one step.

        Daphne's `serverSend` goes through autobahn's `sendMessage` -> `sendFrame` -> `sendData`,
        which formats debug-log arguments (`hltype`/`hlval`, click styling) for every frame even
        with debug logging off, and logs per frame itself: most of Daphne's cost per delivery.
        This is the same frame (server frames are unmasked), written the same way; with
        permessage-deflate negotiated the payload is compressed here by the connection's own
        compressor (autobahn's, so its context and settings hold) and RSV1 is set, as autobahn
        does. Anything unusual (not open yet, queued writes, over the limit) takes autobahn's path.
        """
        payload = content if binary else content.encode("utf8")
        length = len(payload)
        if (
            self.state != self.STATE_OPEN
            or self.send_queue
            or self.maskServerFrames
            or self.autoFragmentSize
            or 0 < self.maxMessagePayloadSize < length
        ):
            super().serverSend(content, binary)
            return
        opcode = 0x82 if binary else 0x81  # FIN + binary/text
        compressor = self._perMessageCompress
        if compressor is not None:
            compressor.start_compress_message()
            payload = compressor.compress_message_data(payload) + compressor.end_compress_message()
            length = len(payload)
            opcode |= 0x40  # RSV1: this message is compressed
        if length <= 125:
            header = struct.pack("!BB", opcode, length)
        elif length <= 0xFFFF:
            header = struct.pack("!BBH", opcode, 126, length)
        else:
            header = struct.pack("!BBQ", opcode, 127, length)
        self.transport.write(header + payload)


def accept_deflate(offers: list[Any]) -> Any:
    """Accept a client's permessage-deflate offer (only with WEBSOCKET_DEFLATE on), with our window and memory.

    The server compresses with a 2^WEBSOCKET_DEFLATE_WINDOW_BITS window (a smaller window than the
    client's decompressor allows is always readable), and asks the client for the same when its
    offer lets it, which bounds the server's decompressor too. Inflated messages are bounded by
    the same message size limit as uncompressed ones.
    """
    bits = settings.WEBSOCKET_DEFLATE_WINDOW_BITS
    for offer in offers:
        if not isinstance(offer, PerMessageDeflateOffer):
            continue
        window = bits if not offer.request_max_window_bits else min(bits, offer.request_max_window_bits)
        return PerMessageDeflateOfferAccept(  # type: ignore[no-untyped-call]
            offer,
            request_max_window_bits=bits if offer.accept_max_window_bits else 0,
            window_bits=window,
            mem_level=settings.WEBSOCKET_DEFLATE_MEM_LEVEL,
            max_message_size=settings.DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE,
        )
    return None


class DrainingServer(Server):  # type: ignore[misc]
    """Daphne, but SIGTERM first drains: stop accepting, flush document commits, close sockets with 4501.

    It also bounds how long a client may take to send its request headers (`DeadlineHTTPFactory`)
    and how large a message a socket without credentials may send (`CappedWebSocketProtocol`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ports: list[Any] = []

    # Server.run() builds its HTTP factory inline (`self.http_factory = HTTPFactory(self)`) and then
    # listens with it; this is the one seam to substitute ours without copying run().
    @property
    def http_factory(self) -> Any:
        return self._http_factory

    @http_factory.setter
    def http_factory(self, factory: Any) -> None:
        self._http_factory = factory if isinstance(factory, DeadlineHTTPFactory) else DeadlineHTTPFactory(self)

    # Likewise for the WebSocket factory: the same one run() built, speaking CappedWebSocketProtocol.
    @property
    def ws_factory(self) -> Any:
        return self._ws_factory

    @ws_factory.setter
    def ws_factory(self, factory: WebSocketFactory) -> None:
        factory.protocol = CappedWebSocketProtocol
        if settings.WEBSOCKET_DEFLATE:
            factory.setProtocolOptions(perMessageCompressionAccept=accept_deflate)
        self._ws_factory = factory

    def listen_success(self, port: Any) -> None:
        self._ports.append(port)
        super().listen_success(port)

    def kill_all_applications(self) -> Any:
        # Twisted runs this "before shutdown" and waits for the Deferred it returns.
        return defer.Deferred.fromFuture(asyncio.ensure_future(self._drain_then_kill()))

    async def _drain_then_kill(self) -> None:
        for port in self._ports:
            try:
                await defer.maybeDeferred(port.stopListening).asFuture(asyncio.get_running_loop())
            except Exception:
                logger.exception("could not stop listening on %s", port)
        logger.info("draining: closing sockets with 4501 after flushing document commits")
        await startup.shutdown()
        killed = super().kill_all_applications()
        await killed.asFuture(asyncio.get_running_loop())


class DrainingCommandLine(CommandLineInterface):  # type: ignore[misc]
    server_class = DrainingServer


def run(host: str, port: int) -> None:
    # An endpoint string rather than --bind/--port: the only way to raise Twisted's backlog (50).
    argv = [
        "-e",
        f"tcp:port={port}:interface={host}:backlog={BACKLOG}",
        "--websocket-max-message-size",
        str(settings.DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE),
        "--websocket-max-frame-size",
        str(settings.DAPHNE_WEBSOCKET_MAX_FRAME_SIZE),
        "--ping-interval",
        str(PING_INTERVAL),
        "--ping-timeout",
        str(PING_TIMEOUT),
        # The upgrade must be accepted this soon (autobahn's opening handshake too).
        "--websocket_connect_timeout",
        str(settings.WEBSOCKET_CONNECT_TIMEOUT),
    ]
    if settings.HTTP_RESPONSE_TIMEOUT:
        argv += ["--http-timeout", str(settings.HTTP_RESPONSE_TIMEOUT)]
    # No --proxy-headers: Daphne would trust the left-most X-Forwarded-For
    # entry, which the client writes; webconnect.identity reads it per TRUSTED_PROXY_COUNT.
    DrainingCommandLine().run([*argv, application_path()])
