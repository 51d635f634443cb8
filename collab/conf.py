"""Co-editing limits, from the environment (listed in .env.example).

Kept here rather than in webconnect/settings.py so the collab app owns them;
read through `collab.conf.limits()` (tests override with monkeypatch).
"""

from __future__ import annotations

from dataclasses import dataclass

from webconnect.env import envint


@dataclass
class Limits:
    # A single Yjs update larger than this closes the socket with 4413.
    max_update_bytes: int = envint("COLLAB_MAX_UPDATE_BYTES", 512 * 1024, minimum=64)
    # Stored size (snapshot + log) a document may reach; beyond it edits are refused.
    max_document_bytes: int = envint("COLLAB_MAX_DOCUMENT_BYTES", 16 * 1024 * 1024, minimum=1024)
    # Bytes of updates one editor may send to one document per minute (per process; a
    # token bucket, so a burst up to the whole minute's budget passes). Beyond: 4529.
    edit_bytes_per_minute: int = envint("COLLAB_EDIT_BYTES_PER_MINUTE", 8 * 1024 * 1024, minimum=1024)
    # Updates committed in one transaction at most (group commit).
    group_commit_max: int = envint("COLLAB_GROUP_COMMIT_MAX", 500, minimum=1)
    # With several processes, each open room re-reads the log this often (seconds)
    # to recover anything pub/sub lost; the overlap re-reads late-committed ids.
    resync_seconds: int = envint("COLLAB_RESYNC_SECONDS", 5, minimum=1)
    resync_overlap: int = envint("COLLAB_RESYNC_OVERLAP", 200, minimum=0)
    # Automatic snapshots kept per document (named versions are never trimmed).
    automatic_versions_kept: int = envint("COLLAB_AUTOMATIC_VERSIONS_KEPT", 50, minimum=1)


LIMITS = Limits()


def limits() -> Limits:
    return LIMITS
