from __future__ import annotations

import json
from typing import Any

from django import forms

from policies import cedar, policytests


class PolicyTextWidget(forms.Textarea):
    """The policy text, with a picker that searches users and groups and inserts them at the cursor."""

    template_name = "policies/widgets/policy_text.html"

    class Media:
        css = {"all": ["policies/policy_text.css"]}
        # The Cedar editor (frontend/src/policy-editor.js: CodeMirror 6 + cedar-wasm), then the picker.
        js = ["policies/policy-editor.bundle.js", "policies/policy_text.js"]

    def __init__(self, *, search_url: str, attrs: dict[str, Any] | None = None) -> None:
        super().__init__({"class": "vLargeTextField", **(attrs or {})})
        self.search_url = search_url

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        context["widget"]["search_url"] = self.search_url
        context["widget"]["schema"] = cedar.schema_text()  # the editor validates against the server's schema
        return context


class AccessPolicyForm(forms.ModelForm):  # type: ignore[type-arg]
    """The admin's form: after the whole-set validation (AccessPolicy.clean), the policy tests."""

    def _post_clean(self) -> None:
        super()._post_clean()  # type: ignore[misc]
        if self.errors:
            return
        policy = self.instance
        for message in policytests.failures_with_edit(
            name=policy.name, text=policy.text, enabled=policy.enabled, pk=policy.pk
        ):
            self.add_error("text", message)


class SimulatorForm(forms.Form):
    username = forms.CharField(
        required=False,
        help_text='Acting as this user in a browser session: a username (or User::"3", or an id).',
    )
    token = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=True),
        help_text="Or paste an access token: its user and scopes apply. Empty both for anonymous.",
    )
    action = forms.ChoiceField(choices=[(a, a) for a in cedar.ACTIONS])
    resource_type = forms.ChoiceField(choices=[(t, t) for t in cedar.RESOURCE_TYPES])
    resource_id = forms.CharField(
        help_text="A channel name (chat.lobby; user.bob is bob's personal channel), a document or dashboard id."
    )
    attrs = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text=(
            "Resource attributes as JSON; a user by username or id, "
            'e.g. {"owner_id": "alice", "editor_ids": [5, "bob"]}.'
        ),
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
    file = forms.FileField(required=False, help_text="A JSON or YAML file as exported here. It replaces every policy.")
    # The file's text, carried from the impact preview to its confirmation.
    content = forms.CharField(required=False, widget=forms.HiddenInput, strip=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        upload = data.get("file")
        if upload is not None:
            data["content"] = upload.read().decode("utf-8", errors="replace")
        elif not data.get("content"):
            raise forms.ValidationError("choose a file to import")
        return data
