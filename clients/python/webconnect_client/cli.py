"""`webconnect-client` / `python -m webconnect_client`: subscribe, publish, request, presence, history."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from webconnect_client.client import Client, ServerError


def _trace(direction: str, raw: str, elapsed: float) -> None:
    print(f"{elapsed * 1000:10.2f} ms {direction} {raw}", file=sys.stderr, flush=True)


def _json_arg(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="webconnect-client", description=__doc__)
    parser.add_argument("--url", default=os.environ.get("WEBCONNECT_URL", "ws://127.0.0.1:8000/ws/"))
    parser.add_argument(
        "--token", default=os.environ.get("WEBCONNECT_TOKEN"), help="access token (or WEBCONNECT_TOKEN)"
    )
    parser.add_argument("--ticket", help="a one-time ticket from POST /api/realtime/tickets/")
    parser.add_argument("--trace", action="store_true", help="print every raw frame with its timing on stderr")
    parser.add_argument("--timeout", type=float, default=10.0)
    commands = parser.add_subparsers(dest="command", required=True)
    sub = commands.add_parser("subscribe", help="print the channel's messages as JSON lines")
    sub.add_argument("channel")
    sub.add_argument("--count", type=int, default=0, help="exit after this many messages (0: never)")
    sub.add_argument("--since", help="OFFSET:EPOCH to recover from")
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


async def run(args: argparse.Namespace) -> int:
    client = Client(
        args.url,
        token=args.token,
        ticket=args.ticket,
        trace=_trace if args.trace else None,
        request_timeout=args.timeout,
        reconnect=args.command == "subscribe" and not args.ticket,
    )
    await client.connect()
    try:
        if args.command == "subscribe":
            since = None
            if args.since:
                offset, _, epoch = args.since.partition(":")
                since = (int(offset), epoch)
            subscription = await client.subscribe(args.channel, since=since)
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
                    break
        elif args.command == "publish":
            _print(await client.publish(args.channel, args.payload))
        elif args.command == "request":
            _print(await client.request(args.method, args.payload, timeout=args.timeout))
        elif args.command == "presence":
            _print(await client.presence(args.channel))
        elif args.command == "history":
            _print(await client.history(args.channel, args.limit))
    except ServerError as error:
        print(f"error: {error.code}: {error.message}", file=sys.stderr)
        return 2
    finally:
        await client.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 130
    except (OSError, ConnectionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
