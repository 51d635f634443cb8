"""SIGTERM on one of two server processes in the middle of an edit: its editors move over, nothing is lost.

The terminated process stops listening, commits what it accepted, closes its
sockets with 4501 (going away) and exits within SHUTDOWN_GRACE_SECONDS; the
editor reconnects to the other process and carries on.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from collab import services
from tests.conftest import LiveServer, start_server
from tests.kernel.support import Editor, describe, read_document, start_editing, wait_for
from webconnect.kernel import codes

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

GRACE = 5  # SHUTDOWN_GRACE_SECONDS of the terminated process
EXIT_MARGIN = 5.0  # Twisted's own shutdown after the drain, on two busy cores


async def test_sigterm_on_one_of_two_servers_mid_edit_loses_nothing(
    test_database_name: str, alice: Any, mint_token: Callable[..., str]
) -> None:
    document = await sync_to_async(services.document_create)(owner=alice, title="Drain")
    tokens = [await sync_to_async(mint_token)("alice", "docs:read docs:write") for _ in range(3)]
    servers: list[LiveServer] = []
    a = b = None
    stop_typing = asyncio.Event()
    typing: list[asyncio.Task[None]] = []
    try:
        for grace in (GRACE, GRACE):
            servers.append(
                await asyncio.to_thread(
                    start_server, test_database_name, extra_env={"SHUTDOWN_GRACE_SECONDS": str(grace)}
                )
            )
        first, second = servers
        path = f"/ws/docs/{document.pk}"
        a = Editor("A", [first.ws_url + path, second.ws_url + path], tokens[0])
        b = Editor("B", [second.ws_url + path], tokens[1])
        editors = (a, b)
        # Edits cross the two processes before the signal.
        await start_editing(a, b, stop_typing, typing)

        signalled_at = time.monotonic()
        first.process.send_signal(signal.SIGTERM)
        await wait_for(
            lambda: bool(a.closes_after(signalled_at)),
            GRACE + EXIT_MARGIN,
            lambda: f"A's socket was not closed after SIGTERM: {describe(editors)}",
        )
        closed = a.closes_after(signalled_at)[0]
        assert closed.code == codes.GOING_AWAY, f"A's socket closed with {closed.code}, not {codes.GOING_AWAY}"
        try:
            await asyncio.to_thread(first.process.wait, GRACE + EXIT_MARGIN)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the terminated server still runs {GRACE + EXIT_MARGIN:.0f} s after SIGTERM"
            ) from None
        exited_after = time.monotonic() - signalled_at
        assert first.process.returncode == 0, f"the terminated server exited with {first.process.returncode}"

        await wait_for(
            lambda: a.synced_after(closed.at) and a.url.startswith(second.ws_url),
            15,
            lambda: f"A did not reconnect to the other server: {describe(editors)}",
        )
        moved_at = len(a.made)
        await asyncio.sleep(1.0)  # and both keep editing there
        stop_typing.set()
        await asyncio.gather(*typing)
        assert len(a.made) > moved_at, "A made no edit after moving"
        assert not b.closes, f"B, on the other server, was disconnected: {b.closes}"
        assert a.fatal is None, a.fatal

        everything = a.made + b.made
        await wait_for(
            lambda: not a.missing(everything) and not b.missing(everything),
            20,
            lambda: (
                f"editors did not converge: A lacks {len(a.missing(everything))}, "
                f"B lacks {len(b.missing(everything))} of {len(everything)} edits; {describe(editors)}"
            ),
        )
        seen = await read_document(second.ws_url, document.pk, tokens[2])
        lost = [token for token in everything if token not in seen]
        assert not lost, f"a fresh client lacks {len(lost)} of {len(everything)} edits, e.g. {lost[:5]}"
        assert str(a.text) == str(b.text) == seen, "the replicas did not converge on one text"
        print(
            f"A closed {closed.code} after {closed.at - signalled_at:.2f} s, server exited after {exited_after:.2f} s "
            f"(grace {GRACE} s); {len(everything)} edits kept; {describe(editors)}"
        )
    finally:
        stop_typing.set()
        for task in typing:
            task.cancel()
        for started in (a, b):
            if started is not None:
                await started.stop()
        for server in servers:
            server.stop()
