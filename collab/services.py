"""Writes for documents: the update log, compaction, versions.

Sharing is policies.services.share_grant / share_revoke (a ShareGrant per user or group).

Everything here is synchronous ORM code; the consumer calls it through
`database_sync_to_async`.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connections, transaction
from django.db.backends.sqlite3.base import DatabaseWrapper as SQLiteDatabaseWrapper
from django.db.models import F
from django.utils import timezone
from pycrdt import Doc, XmlFragment, merge_updates

from collab import relay
from collab.conf import limits
from collab.models import Document, DocumentUpdate, DocumentVersion
from webconnect.encryption import decrypt, encrypt

logger = logging.getLogger(__name__)

FRAGMENT = "default"  # the XmlFragment Tiptap's Collaboration extension edits


class DocumentTooLarge(Exception):
    pass


# --- The log -----------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedDocument:
    state: bytes  # one merged update: snapshot + every log row
    seq: int  # the highest log id included
    size: int


def document_load(*, document_id: int) -> LoadedDocument:
    """Snapshot and log read under the row lock compaction takes, so they match."""
    with transaction.atomic():
        document = Document.objects.select_for_update().get(pk=document_id)
        rows = list(
            DocumentUpdate.objects.filter(document_id=document_id, id__gt=document.snapshot_seq)
            .order_by("id")
            .values_list("id", "data")
        )
    parts = [decrypt(bytes(document.snapshot))] if document.snapshot else []
    parts += [decrypt(bytes(data)) for _, data in rows]
    seq = rows[-1][0] if rows else document.snapshot_seq
    state = merge_updates(*parts) if len(parts) > 1 else (parts[0] if parts else b"")
    return LoadedDocument(state=state, seq=seq, size=sum(len(part) for part in parts))


def document_updates_since(*, document_id: int, seq: int) -> tuple[list[bytes], int]:
    """Log rows after `seq` (for a room catching up); the snapshot too if compaction passed `seq`."""
    with transaction.atomic():
        document = Document.objects.select_for_update().get(pk=document_id)
        rows = list(
            DocumentUpdate.objects.filter(document_id=document_id, id__gt=max(seq, document.snapshot_seq))
            .order_by("id")
            .values_list("id", "data")
        )
    parts = [decrypt(bytes(document.snapshot))] if document.snapshot_seq > seq and document.snapshot else []
    parts += [decrypt(bytes(data)) for _, data in rows]
    return parts, max([seq, document.snapshot_seq, *[row_id for row_id, _ in rows]])


# Rows per INSERT statement (4 parameters each: well inside SQLite's and PostgreSQL's limits).
_INSERT_ROWS = 250


def document_append_updates(*, document_id: int, updates: list[tuple[bytes, int | None]], touch: bool = True) -> int:
    """Append accepted updates (group commit: one transaction for a batch). Returns the last id.

    `touch` also moves the document's `updated_at` and `size`; the rooms do it only
    now and then, since that row update is a second statement on the hot path.
    The rows go in as one plain multi-row INSERT: `bulk_create` built a model
    instance per row and cost twice the commit itself for a one-update batch.
    """
    if not updates:
        return 0
    total = sum(len(data) for data, _ in updates)
    connection = connections[DocumentUpdate.objects.db]
    quote = connection.ops.quote_name
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    # Only the model's own (quoted) names are formatted in; every value is a parameter.
    sql = (
        f"INSERT INTO {quote(DocumentUpdate._meta.db_table)} "  # noqa: S608
        f"({quote('document_id')}, {quote('data')}, {quote('user_id')}, {quote('created_at')}) VALUES "
    )
    last = 0
    with transaction.atomic(), connection.cursor() as cursor:
        for start in range(0, len(updates), _INSERT_ROWS):
            chunk = updates[start : start + _INSERT_ROWS]
            params: list[Any] = []
            for data, user_id in chunk:
                params += [document_id, encrypt(data), user_id, now]
            cursor.execute(sql + ", ".join(["(%s, %s, %s, %s)"] * len(chunk)) + f" RETURNING {quote('id')}", params)
            last = max(last, *(row[0] for row in cursor.fetchall()))
        if touch:
            Document.objects.filter(pk=document_id).update(size=F("size") + total, updated_at=timezone.now())
    return int(last)


class LoopLog:
    """SQLite only: the log appended from the event loop itself, on a connection of its own.

    A batch written here costs about 0.1 ms and no thread: handing it to a writer thread
    and back cost more than the commit (two thread wake-ups, and the GIL handed over twice
    while the loop is busy). Never waits for the write lock (busy timeout 0): when another
    writer holds it (compaction, another process) `append` answers False and the batch
    goes to a writer thread, which may wait without stopping the loop.
    """

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, timeout=0, isolation_level=None)
        # What Django sets on its own SQLite connections (webconnect/settings.py, the backend).
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        quote = connections[DocumentUpdate.objects.db].ops.quote_name
        self._insert = (
            f"INSERT INTO {quote(DocumentUpdate._meta.db_table)} "  # noqa: S608 (model names, quoted)
            f"({quote('document_id')}, {quote('data')}, {quote('user_id')}, {quote('created_at')}) VALUES "
        )
        self._touch = (
            f"UPDATE {quote(Document._meta.db_table)} SET {quote('size')} = {quote('size')} + ?, "  # noqa: S608
            f"{quote('updated_at')} = ? WHERE {quote('id')} = ?"
        )

    def append(self, document_id: int, updates: list[tuple[bytes, int | None]], touch: bool) -> bool:
        """Commit `updates` as document_append_updates does; False: the database is busy, nothing written."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return False
            raise
        try:
            now = connections[DocumentUpdate.objects.db].ops.adapt_datetimefield_value(timezone.now())
            for start in range(0, len(updates), _INSERT_ROWS):
                chunk = updates[start : start + _INSERT_ROWS]
                params: list[Any] = []
                for data, user_id in chunk:
                    params += [document_id, encrypt(data), user_id, now]
                self.db.execute(self._insert + ", ".join(["(?, ?, ?, ?)"] * len(chunk)), params)
            if touch:
                self.db.execute(self._touch, (sum(len(data) for data, _ in updates), now, document_id))
            self.db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                self.db.execute("ROLLBACK")
            raise
        return True

    def close(self) -> None:
        self.db.close()


def loop_log() -> LoopLog | None:
    """A LoopLog when the documents live in an SQLite file, else None (PostgreSQL: writer threads)."""
    connection = connections[DocumentUpdate.objects.db]
    if not isinstance(connection, SQLiteDatabaseWrapper) or connection.is_in_memory_db():
        return None
    return LoopLog(str(connection.settings_dict["NAME"]))


def document_compact(*, document_id: int) -> bool:
    """Fold the log into the snapshot. Idempotent; the row lock makes concurrent runs queue.

    Writers keep appending while this runs: only rows up to the id read under
    the lock are folded and deleted, later rows stay in the log.
    """
    with transaction.atomic():
        # Take the write lock first: PostgreSQL row lock, and on SQLite the
        # database write lock, so a second compaction waits and then finds nothing.
        if not Document.objects.filter(pk=document_id).update(snapshot_seq=F("snapshot_seq")):
            return False
        document = Document.objects.select_for_update().get(pk=document_id)
        rows = list(
            DocumentUpdate.objects.filter(document_id=document_id, id__gt=document.snapshot_seq)
            .order_by("id")
            .values_list("id", "data", "user__username")
        )
        if not rows:
            return False
        parts = [decrypt(bytes(document.snapshot))] if document.snapshot else []
        parts += [decrypt(bytes(data)) for _, data, _ in rows]
        doc: Doc[Any] = Doc()
        for part in parts:
            doc.apply_update(part)
        state = doc.get_update()
        last = rows[-1][0]
        authors = sorted({name for _, _, name in rows if name})
        DocumentVersion.objects.create(
            document=document, automatic=True, state=encrypt(state), seq=last, authors=authors
        )
        DocumentUpdate.objects.filter(document_id=document_id, id__lte=last).delete()
        Document.objects.filter(pk=document_id).update(snapshot=encrypt(state), snapshot_seq=last, size=len(state))
        _trim_automatic_versions(document_id)
    return True


def _trim_automatic_versions(document_id: int) -> None:
    keep = limits().automatic_versions_kept
    stale = DocumentVersion.objects.filter(document_id=document_id, automatic=True).order_by("-created_at", "-id")[
        keep:
    ]
    DocumentVersion.objects.filter(pk__in=[v.pk for v in stale]).delete()


def version_state(version: DocumentVersion) -> bytes:
    """A version's Yjs state in the clear (stored encrypted when ENCRYPTION_KEYS is set)."""
    return decrypt(bytes(version.state))


def document_state(*, document_id: int) -> bytes:
    return document_load(document_id=document_id).state


def load_doc(state: bytes) -> Doc[Any]:
    doc: Doc[Any] = Doc()
    if state:
        doc.apply_update(state)
    return doc


def document_change(*, document: Document, user: Any, change: Callable[[XmlFragment], None]) -> bytes:
    """Make a server-side edit as a new Yjs change on top of the current state.

    The change is appended to the log like any client's and pushed to open rooms.
    """
    doc = load_doc(document_state(document_id=document.pk))
    before = doc.get_state()
    fragment = doc.get(FRAGMENT, type=XmlFragment)
    with doc.transaction(origin="server"):
        change(fragment)
    update = doc.get_update(before)
    with transaction.atomic():
        document_append_updates(document_id=document.pk, updates=[(update, getattr(user, "pk", None))])
        relay.publish_on_commit(document.pk, relay.UPDATE, update)
    return update


# --- Documents ------------------------------------------------------------------------


@transaction.atomic
def document_create(*, owner: Any, title: str, initial: Callable[[XmlFragment], None] | None = None) -> Document:
    document = Document.objects.create(owner=owner, title=title.strip()[:200] or "Untitled")
    if initial is not None:
        doc: Doc[Any] = Doc()
        fragment = doc.get(FRAGMENT, type=XmlFragment)
        with doc.transaction(origin="server"):
            initial(fragment)
        document_append_updates(document_id=document.pk, updates=[(doc.get_update(), owner.pk)])
    return document


def document_rename(*, document: Document, title: str) -> Document:
    document.title = title.strip()[:200] or "Untitled"
    document.save(update_fields=["title", "updated_at"])
    return document


@transaction.atomic
def document_delete(*, document: Document) -> None:
    document_id = document.pk
    document.delete()
    relay.publish_on_commit(document_id, relay.RECHECK)


# --- Versions ---------------------------------------------------------------------------


@transaction.atomic
def version_create(*, document: Document, user: Any, name: str) -> DocumentVersion:
    loaded = document_load(document_id=document.pk)
    return DocumentVersion.objects.create(
        document=document,
        name=name.strip()[:200] or "Version",
        state=encrypt(loaded.state),
        seq=loaded.seq,
        created_by=user,
        authors=[user.get_username()],
    )


def version_restore(*, document: Document, version: DocumentVersion, user: Any) -> bytes:
    """Restore as a new change: replace the content with the version's, on top of later work."""
    old = load_doc(version_state(version)).get(FRAGMENT, type=XmlFragment)

    def replace(fragment: XmlFragment) -> None:
        del fragment.children[0 : len(fragment.children)]
        for child in old.children:
            copy_xml_node(child, fragment)

    return document_change(document=document, user=user, change=replace)


def copy_xml_node(node: Any, parent: Any) -> None:
    """Deep-copy a Yjs XML node (element or text with formatting) under `parent`."""
    from pycrdt import XmlElement, XmlText

    if isinstance(node, XmlText):
        text = parent.children.append(XmlText())
        index = 0
        for content, attrs in node.diff():
            if isinstance(content, str):
                text.insert(index, content, attrs or None)
                index += len(content)
        return
    if isinstance(node, XmlElement):
        element = parent.children.append(XmlElement(node.tag))
        attributes: Any = node.attributes
        for key, value in attributes:
            element.attributes[key] = value
        for child in node.children:
            copy_xml_node(child, element)
