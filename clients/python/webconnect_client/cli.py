"""`webconnect-client` / `python -m webconnect_client`: subscribe, publish, request, presence, history."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from websockets.exceptions import InvalidHandshake, InvalidURI

from webconnect_client.client import Client, Disconnected, HandshakeRefused, ServerError

EXIT_OK = 0
EXIT_REFUSED = 1  # the server refused the command or the credential, or ended the subscription
EXIT_USAGE = 2  # bad arguments, or the server says the command names nothing it has
EXIT_CONNECTION = 3  # cannot connect, connection lost, no answer in time

# Error codes that mean the command itself is wrong (a typo in a channel or method name).
USAGE_CODES = frozenset({"bad_request", "not_found"})

HOW_TO_AUTHENTICATE = (
    "pass --token or set WEBCONNECT_TOKEN; make one on the server with "
    'manage.py createtoken USERNAME --scopes "realtime:read realtime:write"'
)

EPILOG = f"""\
The token comes from --token or WEBCONNECT_TOKEN, the URL from --url or WEBCONNECT_URL.
A refusal or error is one line on stderr; results are JSON on stdout.

exit codes:
  {EXIT_OK}  done (subscribe: --count messages received)
  {EXIT_REFUSED}  refused: invalid or expired token or ticket, no token where one is needed, forbidden,
     unauthorized, rate limited, or the server ended the subscription (a policy change, the token
     revoked, the user signed out)
  {EXIT_USAGE}  usage: bad arguments, or the server has no such channel namespace or method (not_found)
     or cannot parse the request (bad_request)
  {EXIT_CONNECTION}  connection: cannot connect, connection lost, or no answer within --timeout
"""


class UsageError(Exception):
    pass


def _trace(direction: str, raw: str, elapsed: float) -> None:
    print(f"{elapsed * 1000:10.2f} ms {direction} {raw}", file=sys.stderr, flush=True)


def _json_arg(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from exc


def _since_arg(text: str) -> tuple[int, str]:
    offset, _, epoch = text.partition(":")
    if not offset.isdigit() or not epoch:
        raise argparse.ArgumentTypeError("expected OFFSET:EPOCH, e.g. 42:k3j9")
    return int(offset), epoch


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="webconnect-client",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("WEBCONNECT_URL", "ws://127.0.0.1:8000/ws/"),
        help="the server's /ws/ endpoint (or WEBCONNECT_URL; default ws://127.0.0.1:8000/ws/)",
    )
    parser.add_argument(
        "--token", default=os.environ.get("WEBCONNECT_TOKEN"), help="access token (or WEBCONNECT_TOKEN)"
    )
    parser.add_argument("--ticket", help="a one-time ticket from POST /api/realtime/tickets/")
    parser.add_argument("--trace", action="store_true", help="print every raw frame with its timing on stderr")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for an answer (default 10)")
    commands = parser.add_subparsers(dest="command", required=True)
    sub = commands.add_parser("subscribe", help="print the channel's messages as JSON lines")
    sub.add_argument("channel")
    sub.add_argument("--count", type=int, default=0, help="exit after this many messages (0: never)")
    sub.add_argument("--since", type=_since_arg, help="OFFSET:EPOCH to recover from")
    pub = commands.add_parser("publish", help="publish one JSON payload")
    pub.add_argument("channel")
    pub.add_argument("payload", type=_json_arg)
    req = commands.add_parser("request", help="call a request method")
    req.add_argument("method")
    req.add_argument("payload", type=_json_arg, nargs="?", default=None)
    pres = commands.add_parser("presence", help="who is in a channel")
    pres.add_argument("channel")
    hist = commands.add_parser("history", help="the channel's last messages")
    hist.add_argument("channel")
    hist.add_argument("--limit", type=int, default=50)
    return parser


def _print(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False), flush=True)


async def _subscribe(client: Client, args: argparse.Namespace) -> None:
    subscription = await client.subscribe(args.channel, since=args.since)
    seen = 0
    async for message in subscription:
        _print(
            {
                "channel": message.channel,
                "offset": message.offset,
                "epoch": message.epoch,
                "from": message.sender,
                "payload": message.payload,
            }
        )
        seen += 1
        if args.count and seen >= args.count:
            return
    # The iteration ends only when the server ended the subscription (or the connection).
    raise subscription.ended or Disconnected(client.close_code, client.close_reason)


async def run(args: argparse.Namespace) -> int:
    client = Client(
        args.url,
        token=args.token,
        ticket=args.ticket,
        trace=_trace if args.trace else None,
        request_timeout=args.timeout,
        reconnect=args.command == "subscribe" and not args.ticket,
    )
    try:
        await asyncio.wait_for(client.connect(), args.timeout)
    except InvalidURI as exc:
        raise UsageError(f"--url: {exc}") from None
    try:
        if args.command == "subscribe":
            await _subscribe(client, args)
        elif args.command == "publish":
            _print(await client.publish(args.channel, args.payload))
        elif args.command == "request":
            _print(await client.request(args.method, args.payload, timeout=args.timeout))
        elif args.command == "presence":
            _print(await client.presence(args.channel))
        elif args.command == "history":
            _print(await client.history(args.channel, args.limit))
    finally:
        await client.close()
    return EXIT_OK


def _no_credential(args: argparse.Namespace) -> bool:
    return not args.token and not args.ticket


def report(error: BaseException, args: argparse.Namespace) -> tuple[int, str]:
    """The exit code and the one line on stderr for an error."""
    if isinstance(error, UsageError):
        return EXIT_USAGE, f"usage: {error}"
    if isinstance(error, HandshakeRefused):
        if _no_credential(args) and error.status in {401, 403}:
            return EXIT_REFUSED, f"refused: a token is needed: {HOW_TO_AUTHENTICATE} (HTTP {error.status})"
        return EXIT_REFUSED, f"refused: {error}"
    if isinstance(error, ServerError):
        text = f"{error.code}: {error.message}"
        if error.retry_after is not None:
            text += f" (retry after {error.retry_after} s)"
        if error.code in USAGE_CODES:
            return EXIT_USAGE, f"error: {text}"
        if _no_credential(args) and error.code in {"forbidden", "unauthorized"}:
            return EXIT_REFUSED, f"refused: a token is needed: {HOW_TO_AUTHENTICATE} (server: {text})"
        return EXIT_REFUSED, f"refused: {text}"
    if isinstance(error, Disconnected):
        why = f"{error.reason} (close {error.code})" if error.reason else f"close {error.code}"
        if error.refused:
            return EXIT_REFUSED, f"refused: the server closed the connection: {why}"
        return EXIT_CONNECTION, f"connection lost: {why}"
    if isinstance(error, TimeoutError):
        return EXIT_CONNECTION, f"connection: no answer from {args.url} within {args.timeout:g} s"
    if isinstance(error, OSError | InvalidHandshake):
        return EXIT_CONNECTION, f"cannot connect to {args.url}: {error}"
    raise error


def _attach_credentials(argv: list[str]) -> list[str]:
    """`--token -abc` as `--token=-abc`: a token may begin with "-", which argparse takes for an option."""
    options = {"-h", "--help", "--url", "--token", "--ticket", "--trace", "--timeout"}
    joined: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in {"--token", "--ticket"} and i + 1 < len(argv) and argv[i + 1] not in options:
            joined.append(f"{arg}={argv[i + 1]}")
            i += 2
        else:
            joined.append(arg)
            i += 1
    return joined


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(_attach_credentials(argv))  # exits 2 on bad arguments
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # report() maps every expected failure to one line
        code, line = report(error, args)
        print(line, file=sys.stderr, flush=True)
        return code
