"""Document messages between processes, on the kernel's bus (kind "doc", key = document id).

A message is one kind byte, the sending process's id (16 ASCII characters;
zeros for a server-side change that every process, the sender's included,
must apply) and the payload: a Yjs update, an awareness update, or nothing
(re-check: rights on the document changed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction

from webconnect.kernel.bus import BusUnavailable, get_bus, keyed

logger = logging.getLogger(__name__)

KIND = "doc"
keyed(KIND)  # one bus topic per document: a process hears only the documents it has open
UPDATE = 0
AWARENESS = 1
RECHECK = 2
ANY_PROCESS = "0" * 16


@dataclass(frozen=True)
class RelayMessage:
    kind: int
    origin: str
    payload: bytes


def encode(kind: int, origin: str, payload: bytes = b"") -> bytes:
    return bytes([kind]) + origin.encode("ascii") + payload


def decode(data: bytes) -> RelayMessage:
    if len(data) < 17 or data[0] not in (UPDATE, AWARENESS, RECHECK):
        raise ValueError("not a document relay message")
    return RelayMessage(data[0], data[1:17].decode("ascii"), bytes(data[17:]))


def publish_on_commit(document_id: int, kind: int, payload: bytes = b"") -> None:
    """From sync code: after commit, every process holding the document open applies it."""

    def send() -> None:
        try:
            get_bus().publish_threadsafe(KIND, str(document_id), encode(kind, ANY_PROCESS, payload))
        except BusUnavailable:  # each room's periodic resync from the log catches up
            logger.exception("could not notify rooms of document %s", document_id)

    transaction.on_commit(send)
