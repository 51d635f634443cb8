"""Data-subject requests: one archive of everything about a person, and their erasure.

Erasure keeps the audit chain verifiable by the tombstone approach (webconnect.audit,
TOMBSTONE_ACTION): the person's events are rewritten in place with a pseudonym
(their name, e-mail and IP gone), their stored hashes and links stay, and one
appended `audit.erased` event, signed with AUDIT_SIGNING_KEY, lists the hash of
each rewritten event's new contents. The signed checkpoints still hold (they sign
the unchanged stored hashes); verifyaudit checks the tombstone's signature.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone
from oauth2_provider.models import (
    get_access_token_model,
    get_application_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
)
from pycrdt import XmlFragment

from collab import convert, services
from collab.models import Document, DocumentUpdate, DocumentVersion
from compliance import checkpoints, signing
from compliance.verification import tombstone_message
from webconnect.audit import TOMBSTONE_ACTION, _locked_head, audit_export_jsonl, audit_record, content_hash
from webconnect.models import AuditEvent
from webconnect.realtime.history import stored_message, stream_key_pattern

# --- Export -------------------------------------------------------------------------------------


def _their_events(user: Any) -> Iterator[AuditEvent]:
    """Events naming the person: as actor (by id or name), or their name/e-mail in target or details."""
    needles = _needles(user)
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=2000):
        if event.actor_id == user.pk or event.actor_name in needles:
            yield event
            continue
        text = event.target + "\0" + json.dumps(event.details, default=str)
        if any(needle in text for needle in needles):
            yield event


def _needles(user: Any) -> list[str]:
    names = [user.get_username(), user.email, user.get_full_name()]
    return [name for name in names if name and len(name) >= 3]


def _redis() -> Any:
    if not settings.REDIS_URL:
        return None
    import redis

    return redis.Redis.from_url(settings.REDIS_URL)


def _sender_pattern(user_id: int) -> re.Pattern[str]:
    # public_identity(): "from":{"user_id":N,"name":"..."} (dumps sorts nothing: name after user_id)
    return re.compile(r'"from":\{"user_id":' + str(user_id) + r"[,}]")


def _their_messages(client: Any, user_id: int) -> Iterator[tuple[bytes, bytes, str]]:
    """(stream key, entry id, frame) of every retained channel message the person sent (Redis history)."""
    if client is None:
        return
    sender = _sender_pattern(user_id)
    for key in client.scan_iter(match=stream_key_pattern(settings.REALTIME_REDIS_PREFIX), count=500, _type="STREAM"):
        epoch = (client.get(key.removesuffix(b":stream") + b":epoch") or b"").decode()
        for entry_id, fields in client.xrange(key, min="-", max="+"):
            frame = stored_message(int(entry_id.split(b"-")[0]), epoch, fields)
            if sender.search(frame):
                yield key, entry_id, frame


def _their_presence(client: Any, user_id: int) -> Iterator[tuple[bytes, bytes, dict[str, Any]]]:
    if client is None:
        return
    pattern = f"{settings.REALTIME_REDIS_PREFIX}:{{*}}:presence"
    for key in client.scan_iter(match=pattern, count=500, _type="HASH"):
        for name, raw in client.hgetall(key).items():
            try:
                info = json.loads(raw)
            except ValueError:
                continue
            if isinstance(info, dict) and info.get("user_id") == user_id:
                yield key, name, info


def _document_files(document: Document) -> dict[str, str]:
    fragment = services.load_doc(services.document_state(document_id=document.pk)).get(
        services.FRAGMENT, type=XmlFragment
    )
    tree = convert.to_json(fragment)
    meta = {
        "id": document.pk,
        "title": document.title,
        "created_at": document.created_at.isoformat(),
        "updated_at": document.updated_at.isoformat(),
    }
    return {
        f"documents/{document.pk}.md": convert.to_markdown(tree),
        f"documents/{document.pk}.json": json.dumps({**meta, "content": tree}, indent=2),
    }


def _tokens(user: Any) -> dict[str, Any]:
    """Metadata only: never a token or secret value."""
    access = get_access_token_model().objects.filter(user=user).select_related("application")
    refresh = get_refresh_token_model().objects.filter(user=user).select_related("application")
    return {
        "access_tokens": [
            {
                "id": t.pk,
                "application": t.application.name if t.application else None,
                "scope": t.scope,
                "created": t.created.isoformat(),
                "expires": t.expires.isoformat(),
            }
            for t in access
        ],
        "refresh_tokens": [
            {
                "id": t.pk,
                "application": t.application.name if t.application else None,
                "created": t.created.isoformat(),
                "revoked": t.revoked.isoformat() if t.revoked else None,
            }
            for t in refresh
        ],
        "applications": [
            {"id": a.pk, "name": a.name, "client_id": a.client_id, "grant": a.authorization_grant_type}
            for a in get_application_model().objects.filter(user=user)
        ],
    }


def subject_archive(user: Any) -> dict[str, str]:
    """Every file of the person's archive, by name (the archive's contents)."""
    files: dict[str, str] = {}
    profile = {
        "id": user.pk,
        "username": user.get_username(),
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "date_joined": user.date_joined.isoformat(),
        "last_login": user.last_login.isoformat() if user.last_login else None,
        "is_active": user.is_active,
        "is_staff": user.is_staff,
    }
    files["profile.json"] = json.dumps(profile, indent=2)
    files["groups.json"] = json.dumps([g.name for g in user.groups.order_by("name")], indent=2)
    for document in Document.objects.filter(owner=user).order_by("id"):
        files.update(_document_files(document))
    # Documents of others they edited: by the log (not yet compacted) and by the versions' authors.
    edited = set(
        DocumentUpdate.objects.filter(user=user).exclude(document__owner=user).values_list("document_id", flat=True)
    )
    for document_id, authors in DocumentVersion.objects.exclude(document__owner=user).values_list(
        "document_id", "authors"
    ):
        if user.get_username() in (authors or []):
            edited.add(document_id)
    files["documents/edited-elsewhere.json"] = json.dumps(sorted(edited), indent=2)
    client = _redis()
    try:
        files["messages.jsonl"] = "".join(frame + "\n" for _, _, frame in _their_messages(client, user.pk))
        files["presence.json"] = json.dumps([info for _, _, info in _their_presence(client, user.pk)], indent=2)
    finally:
        if client is not None:
            client.close()
    files["tokens.json"] = json.dumps(_tokens(user), indent=2)
    files["audit.jsonl"] = "".join(audit_export_jsonl(_their_events(user)))
    if not settings.REDIS_URL:
        files["README.txt"] = (
            "Channel history and presence live in the server's memory in this (embedded) set-up and are not "
            "included; they expire with the channel's history TTL.\n"
        )
    return files


def subject_export(*, user: Any, actor: Any = None, directory: Path | None = None) -> Path:
    """Write the person's archive (one zip) to COMPLIANCE_EXPORT_DIR; audited as `subject.exported`."""
    files = subject_archive(user)
    manifest = {
        "user_id": user.pk,
        "exported_at": timezone.now().isoformat(),
        "files": {name: hashlib.sha256(body.encode()).hexdigest() for name, body in files.items()},
    }
    target_dir = directory or Path(settings.COMPLIANCE_EXPORT_DIR)
    target_dir.mkdir(parents=True, exist_ok=True)
    path = target_dir / f"subject-{user.pk}-{timezone.now():%Y%m%dT%H%M%S}.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in files.items():
            archive.writestr(name, body)
        archive.writestr("manifest.json", json.dumps(manifest, indent=2))
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.chmod(0o600)
    tmp.replace(path)
    audit_record(
        action="subject.exported",
        actor=actor,
        actor_name="" if actor is not None else "manage.py",
        target=f"user:{user.pk}",
        details={"archive": path.name, "files": len(files)},
    )
    return path


# --- Erasure ------------------------------------------------------------------------------------


def pseudonym_for(user_id: int) -> str:
    """A stable name for an erased person, that nobody can turn back into the person without SECRET_KEY."""
    digest = hmac.new(settings.SECRET_KEY.encode(), f"erased-user:{user_id}".encode(), hashlib.sha256)
    return f"erased-{digest.hexdigest()[:12]}"


def _scrub(value: Any, needles: list[str], pseudonym: str) -> Any:
    if isinstance(value, str):
        for needle in needles:
            value = value.replace(needle, pseudonym)
        return value
    if isinstance(value, list):
        return [_scrub(item, needles, pseudonym) for item in value]
    if isinstance(value, dict):
        return {key: _scrub(item, needles, pseudonym) for key, item in value.items()}
    return value


@dataclass
class Erasure:
    pseudonym: str
    documents_deleted: int = 0
    documents_transferred: int = 0
    edits_anonymised: int = 0
    messages_deleted: int = 0
    presence_deleted: int = 0
    tokens_deleted: int = 0
    audit_events_pseudonymised: int = 0
    tombstone_id: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


def _erase_audit(user: Any, pseudonym: str, result: Erasure) -> None:
    """Rewrite the person's events with the pseudonym and append the signed tombstone, in one transaction."""
    needles = sorted(_needles(user), key=len, reverse=True)
    with transaction.atomic():
        _locked_head()  # no event is appended between the rewrite and its tombstone
        redacted: dict[str, str] = {}
        for event in list(_their_events(user)):
            mine = event.actor_id == user.pk or event.actor_name in needles
            event.actor_name = pseudonym if mine else _scrub(event.actor_name, needles, pseudonym)
            event.target = _scrub(event.target, needles, pseudonym)
            event.details = json.loads(json.dumps(_scrub(event.details, needles, pseudonym), default=str))
            if mine:
                event.client_ip = None
            AuditEvent.objects.filter(pk=event.pk).update(
                actor_name=event.actor_name, target=event.target, details=event.details, client_ip=event.client_ip
            )
            redacted[str(event.pk)] = content_hash(event)
        details: dict[str, Any] = {"pseudonym": pseudonym, "redacted": redacted}
        key = checkpoints.signing_key()
        if key is not None:
            details["signature"] = signing.sign(key, tombstone_message(details))
        tombstone = audit_record(
            action=TOMBSTONE_ACTION, actor_name="manage.py", target=f"user:{user.pk}", details=details
        )
    result.audit_events_pseudonymised = len(redacted)
    result.tombstone_id = tombstone.pk


def subject_erase(*, user: Any, transfer_to: Any = None, actor: Any = None) -> Erasure:
    """Delete or anonymise everything about `user` (see the module's docstring for the audit trail)."""
    pseudonym = pseudonym_for(user.pk)
    result = Erasure(pseudonym=pseudonym)
    user_id = user.pk
    client = _redis()
    try:
        # Found first, deleted once the database part has committed (Redis cannot roll back).
        messages = list(_their_messages(client, user_id))
        presence = list(_their_presence(client, user_id))
        with transaction.atomic():
            _erase_rows(user, transfer_to, pseudonym, result)
            _erase_audit(user, pseudonym, result)
            user.delete()
            result.messages_deleted = len(messages)
            audit_record(
                action="subject.erased",
                actor=actor,
                actor_name="" if actor is not None else "manage.py",
                target=f"user:{user_id}",
                details={
                    "pseudonym": pseudonym,
                    "documents_deleted": result.documents_deleted,
                    "documents_transferred_to": transfer_to.pk if transfer_to is not None else None,
                    "messages_deleted": len(messages),
                    "audit_events_pseudonymised": result.audit_events_pseudonymised,
                    "tombstone": result.tombstone_id,
                },
            )
            transaction.on_commit(lambda: checkpoints.checkpoint_head(reason="erasure"))
        for key, entry_id, _ in messages:
            client.xdel(key, entry_id)
        for key, name, _ in presence:
            result.presence_deleted += int(client.hdel(key, name))
    finally:
        if client is not None:
            client.close()
    return result


def _erase_rows(user: Any, transfer_to: Any, pseudonym: str, result: Erasure) -> None:
    username = user.get_username()
    # Documents they own: transferred to the named user, or deleted.
    for document in Document.objects.filter(owner=user):
        if transfer_to is not None:
            Document.objects.filter(pk=document.pk).update(owner=transfer_to)
            result.documents_transferred += 1
        else:
            services.document_delete(document=document)
            result.documents_deleted += 1
    # Their edits in other documents keep the content and lose the name.
    result.edits_anonymised = DocumentUpdate.objects.filter(user=user).update(user=None)
    DocumentVersion.objects.filter(created_by=user).update(created_by=None)
    for version in DocumentVersion.objects.exclude(authors=[]).iterator():
        if username in version.authors:
            version.authors = [pseudonym if name == username else name for name in version.authors]
            version.save(update_fields=["authors"])
    # Credentials and sessions (applications they own go with the user row).
    for model in (get_access_token_model(), get_refresh_token_model(), get_grant_model(), get_id_token_model()):
        result.tokens_deleted += model.objects.filter(user=user).delete()[0]
    for session in Session.objects.iterator():
        if str(session.get_decoded().get("_auth_user_id")) == str(user.pk):
            session.delete()
    # The admin's own log names changed objects by their text: entries about this user go.
    LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(get_user_model()), object_id=str(user.pk)
    ).delete()
