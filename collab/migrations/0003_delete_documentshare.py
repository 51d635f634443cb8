"""DocumentShare is gone: documents are shared through policies.ShareGrant (see 0002)."""

from __future__ import annotations

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("collab", "0002_document_shares_to_share_grants")]

    operations = [migrations.DeleteModel(name="DocumentShare")]
