"""A sealed channel-history entry reads back as the frame a subscriber got, and its time is readable to retention."""

from __future__ import annotations

import json

from django.test import override_settings

from tests.compliance.helpers import new_keys
from webconnect import encryption
from webconnect.realtime import protocol
from webconnect.realtime.history import entry_time_ms, stored_message


def test_a_sealed_entry_completes_to_the_published_frame_and_keeps_its_time() -> None:
    with override_settings(ENCRYPTION_KEYS=new_keys("k1")):
        prefix, suffix = protocol.message_frame_parts("chat.x", {"text": "numbat"}, {"user_id": 3, "name": "n"}, "json")
        fields = {b"c": encryption.encrypt_text(prefix + "\0" + suffix).encode()}
        assert b"numbat" not in fields[b"c"]
        frame = stored_message(7, "ep0ch", fields)
        assert frame == protocol.complete_message(prefix, 7, "ep0ch", suffix)
        assert json.loads(frame)["header"]["offset"] == 7 and json.loads(frame)["payload"] == {"text": "numbat"}
        assert entry_time_ms(fields) == json.loads(frame)["header"]["ts"]
