"""PostgreSQL stops in the middle of an edit: editors are told at once (4503), reconnect, and nothing is lost.

The cluster is the test's own (initdb into a temporary directory, its own
port), so it can be stopped and started without touching anyone else's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import LiveServer, start_server
from tests.kernel.support import (
    Editor,
    PrivatePostgres,
    describe,
    django_env,
    manage,
    read_document,
    seed_document,
    start_editing,
    wait_for,
)
from webconnect.kernel import codes

pytestmark = pytest.mark.services

DATABASE = "wc_faults_outage"
PROMPT_SECONDS = 5.0  # "at once": the close must not wait for a timeout (30 s is what a stuck socket looks like)


@dataclass
class OutageSite:
    postgres: PrivatePostgres
    server: LiveServer
    document_id: int
    tokens: list[str]


@pytest.fixture
def outage_site() -> Iterator[OutageSite]:
    """A private PostgreSQL with a migrated database, a user, a document and tokens; a live server on it."""
    postgres = PrivatePostgres.create()
    server: LiveServer | None = None
    try:
        postgres.start()
        postgres.createdb(DATABASE)
        env = django_env(postgres.url(DATABASE), DATABASE)
        manage("migrate", "--no-input", "-v", "0", env=env)
        document_id, tokens = seed_document(env)
        server = start_server(DATABASE, extra_env={"DATABASE_URL": postgres.url(DATABASE)})
        yield OutageSite(postgres, server, document_id, tokens)
    finally:
        if server is not None:
            server.stop()
        postgres.destroy()


async def test_postgres_stopping_mid_edit_closes_editors_with_4503_and_loses_nothing(outage_site: OutageSite) -> None:
    site = outage_site
    url = f"{site.server.ws_url}/ws/docs/{site.document_id}"
    a = Editor("A", [url], site.tokens[0])
    b = Editor("B", [url], site.tokens[1])
    editors = (a, b)
    stop_typing = asyncio.Event()
    typing: list[asyncio.Task[None]] = []
    try:
        # Both are editing and see each other's (committed) edits.
        await start_editing(a, b, stop_typing, typing)

        stopped_at = time.monotonic()
        await asyncio.to_thread(site.postgres.stop, "fast")
        stop_took = time.monotonic() - stopped_at
        await wait_for(
            lambda: all(editor.closes_after(stopped_at) for editor in editors),
            PROMPT_SECONDS + 5,
            lambda: f"the editors' sockets were not closed after PostgreSQL stopped: {describe(editors)}",
        )
        for editor in editors:
            first = editor.closes_after(stopped_at)[0]
            assert first.code == codes.UNAVAILABLE, (
                f"{editor.name}'s socket closed with {first.code}, not {codes.UNAVAILABLE} (storage unavailable)"
            )
            took = first.at - stopped_at
            assert took < PROMPT_SECONDS, f"{editor.name} was told after {took:.1f} s, not at once"

        # Down a little longer: the editors keep typing offline and their reconnects are refused.
        await asyncio.sleep(1.5)
        offline_made = {editor.name: len(editor.made) for editor in editors}
        restarted_at = time.monotonic()
        await asyncio.to_thread(site.postgres.start)
        await wait_for(
            lambda: all(editor.synced_after(restarted_at) for editor in editors),
            20,
            lambda: f"the editors did not reconnect and re-sync after PostgreSQL came back: {describe(editors)}",
        )
        await asyncio.sleep(1.0)  # and keep editing on the new connections
        stop_typing.set()
        await asyncio.gather(*typing)
        for editor in editors:
            assert len(editor.made) > offline_made[editor.name], f"{editor.name} made no edit after the outage"
            assert editor.fatal is None, editor.fatal
            # Every attempt during the outage was told "unavailable, retry": no HTTP error, no other code.
            statuses = [failure.status for failure in editor.handshake_failures if failure.status is not None]
            assert not statuses, f"{editor.name}'s reconnects were answered with HTTP {statuses}"
            other = [closed.code for closed in editor.closes_after(stopped_at) if closed.code != codes.UNAVAILABLE]
            assert not other, f"{editor.name}'s sockets closed with {other} during the outage, not only 4503"

        everything = a.made + b.made
        await wait_for(
            lambda: not a.missing(everything) and not b.missing(everything),
            20,
            lambda: (
                f"editors did not converge: A lacks {len(a.missing(everything))}, "
                f"B lacks {len(b.missing(everything))} of {len(everything)} edits; {describe(editors)}"
            ),
        )
        seen = await read_document(site.server.ws_url, site.document_id, site.tokens[2])
        lost = [token for token in everything if token not in seen]
        assert not lost, f"a fresh client lacks {len(lost)} of {len(everything)} edits, e.g. {lost[:5]}"
        assert str(a.text) == str(b.text) == seen, "the replicas did not converge on one text"
        told = {e.name: round(e.closes_after(stopped_at)[0].at - stopped_at, 2) for e in editors}
        print(
            f"pg_ctl stop took {stop_took:.2f} s; closed 4503 after {told} s; "
            f"{len(everything)} edits kept; {describe(editors)}"
        )
    finally:
        stop_typing.set()
        for task in typing:
            task.cancel()
        for editor in editors:
            await editor.stop()
