"""Key rotation: killed in the middle (SIGKILL, a real process), it finishes on the next run, and
every value reads back under the new key alone."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings
from oauth2_provider.models import get_application_model
from pycrdt import Doc, Text

from collab import services
from collab.models import DocumentUpdate
from tests.compliance.helpers import new_keys
from tests.compliance.test_keys import manage, manage_env
from tests.conftest import ROOT
from webconnect import encryption
from webconnect.realtime import protocol
from webconnect.realtime.history import RedisHistory

pytestmark = pytest.mark.django_db(transaction=True)

DOCUMENTS = 4
UPDATES = 300  # per document: 1,200 log rows, 10 per batch, a pause after each


def _seed(alice: Any, keys: str) -> dict[int, list[bytes]]:
    """Documents with log rows and a snapshot, and a readable OAuth secret, all under `keys`."""
    written: dict[int, list[bytes]] = {}
    with override_settings(ENCRYPTION_KEYS=keys):
        for n in range(DOCUMENTS):
            document = services.document_create(owner=alice, title=f"Doc {n}")
            doc: Doc[Any] = Doc()
            text = doc.get("t", type=Text)
            updates = []
            for i in range(UPDATES):
                before = doc.get_state()
                text.insert(len(text), f"<{n}/{i}>")
                updates.append((doc.get_update(before), alice.pk))
            services.document_append_updates(document_id=document.pk, updates=updates[:10])
            services.document_compact(document_id=document.pk)  # a sealed snapshot and version
            services.document_append_updates(document_id=document.pk, updates=updates[10:])
            written[document.pk] = [data for data, _ in updates]
        get_application_model().objects.create(
            name="hs256",
            user=alice,
            client_type="confidential",
            authorization_grant_type="client-credentials",
            client_secret="s3cret-value",
            hash_client_secret=False,
        )
    return written


def _under(key_id: str) -> int:
    return sum(
        1
        for data in DocumentUpdate.objects.values_list("data", flat=True)
        if encryption.key_id_of(bytes(data)) == key_id
    )


async def _publish(keys: str, count: int) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(settings.REDIS_URL)
    history = RedisHistory(client, settings.REALTIME_REDIS_PREFIX)
    with override_settings(ENCRYPTION_KEYS=keys):
        for i in range(count):
            prefix, suffix = protocol.message_frame_parts(f"chat.rot{i % 3}", {"n": i}, {}, "json")
            await history.append(f"chat.rot{i % 3}", prefix, suffix, size=100, ttl=3600)
    await client.aclose()


async def _read_history(keys: str) -> list[str]:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(settings.REDIS_URL)
    history = RedisHistory(client, settings.REALTIME_REDIS_PREFIX)
    frames: list[str] = []
    with override_settings(ENCRYPTION_KEYS=keys):
        for channel in ("chat.rot0", "chat.rot1", "chat.rot2"):
            messages, _ = await history.latest(channel, 100, ttl=3600)
            frames += [text for _, text in messages]
    await client.aclose()
    return frames


def _rotate_killed_then_rerun(alice: Any, *, redis: bool) -> None:
    old = new_keys("old")
    written = _seed(alice, old)
    if redis:
        asyncio.run(_publish(old, 30))
    new = new_keys("new")
    both = f"{new},{old}"
    env = manage_env(str(connection.settings_dict["NAME"]), ENCRYPTION_KEYS=both, JOB_BATCH_PAUSE_MS="15")

    rotating = subprocess.Popen(
        [sys.executable, "manage.py", "rotate_keys", "--batch-size", "10"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while _under("new") < 50:  # several batches in: kill it in the middle
            assert rotating.poll() is None, "rotate_keys finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        rotating.send_signal(signal.SIGKILL)
        rotating.wait(timeout=10)
    finally:
        if rotating.poll() is None:
            rotating.kill()
            rotating.wait(timeout=10)
    halfway = _under("new")
    assert 0 < halfway < DOCUMENTS * (UPDATES - 10), halfway
    # Halfway, everything reads back with both keys.
    with override_settings(ENCRYPTION_KEYS=both):
        for document_id in written:
            loaded = services.load_doc(services.document_load(document_id=document_id).state)
            assert str(loaded.get("t", type=Text)).endswith(f"/{UPDATES - 1}>")

    finished = manage("rotate_keys", "--batch-size", "10", env={**env, "JOB_BATCH_PAUSE_MS": "0"})
    assert finished.returncode == 0, finished.stderr
    assert "done:" in finished.stdout

    # The old key goes: the start-up check passes and every value reads back with the new key alone.
    assert manage("check", env={**env, "ENCRYPTION_KEYS": new}).returncode == 0
    status = manage("rotate_keys", "--status", env={**env, "ENCRYPTION_KEYS": new}).stdout
    assert "old" not in status and "plaintext" not in status, status
    with override_settings(ENCRYPTION_KEYS=new):
        assert _under("new") == DOCUMENTS * (UPDATES - 10)
        for document_id, updates in written.items():
            parts, _ = services.document_updates_since(document_id=document_id, seq=0)
            assert parts[1:] == updates[10:]  # the snapshot, then every log row in order
        secret = get_application_model().objects.get(name="hs256")
        assert secret.client_secret == "s3cret-value"
        stored = get_application_model().objects.filter(name="hs256").values_list("client_secret", flat=True)[0]
        assert stored.startswith("wce1:new:")
    if redis:
        frames = asyncio.run(_read_history(new))
        assert len(frames) == 30 and all('"payload":{"n":' in frame for frame in frames)


def test_a_rotation_killed_midway_finishes_on_rerun_with_everything_readable(alice: Any) -> None:
    if settings.REDIS_URL:
        pytest.skip("the embedded tier (the services tier runs it with Redis history)")
    _rotate_killed_then_rerun(alice, redis=False)


@pytest.mark.services
def test_a_rotation_killed_midway_finishes_on_rerun_on_postgres_and_redis(alice: Any) -> None:
    _rotate_killed_then_rerun(alice, redis=True)
