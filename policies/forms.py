from __future__ import annotations

import json
from typing import Any

from django import forms

from policies import cedar


class SimulatorForm(forms.Form):
    username = forms.CharField(required=False, help_text="Acting as this user in a browser session.")
    token = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=True),
        help_text="Or paste an access token: its user and scopes apply. Empty both for anonymous.",
    )
    action = forms.ChoiceField(choices=[(a, a) for a in cedar.ACTIONS])
    resource_type = forms.ChoiceField(choices=[(t, t) for t in cedar.RESOURCE_TYPES])
    resource_id = forms.CharField(help_text="A channel name (chat.lobby), a document or dashboard id.")
    attrs = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text='Resource attributes as JSON, e.g. {"owner_id": 3, "editor_ids": [5]}.',
    )
    client_ip = forms.GenericIPAddressField(required=False, label="Client IP")
    at = forms.DateTimeField(required=False, label="Time (UTC)", help_text="YYYY-MM-DD HH:MM; empty = now.")

    def clean_attrs(self) -> dict[str, Any]:
        raw = self.cleaned_data.get("attrs") or ""
        if not raw.strip():
            return {}
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("give a JSON object")
        return value


class ImportForm(forms.Form):
    file = forms.FileField(help_text="A JSON or YAML file as exported here. It replaces every policy.")
