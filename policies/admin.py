"""The policy admin: access policies (validated as a set), versions, shares, rate limits,
the simulator, and import/export."""

from __future__ import annotations

import json
from typing import Any

from csp.constants import NONCE
from django.apps import apps
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from policies import authoring, impact, policytests, services
from policies.forms import AccessPolicyForm, ImportForm, PolicyTextWidget, SimulatorForm
from policies.models import (
    SHARE_TEMPLATES,
    AccessPolicy,
    AccessPolicyVersion,
    ConnectionLimitPolicy,
    PolicyTestCase,
    RateLimitPolicy,
    ShareGrant,
)
from policies.simulator import SimulationError, principal_for, resolve_usernames, simulate


@admin.register(AccessPolicy)
class AccessPolicyAdmin(admin.ModelAdmin[AccessPolicy]):
    list_display = ["name", "enabled", "is_template", "description", "updated_at", "updated_by"]
    list_filter = ["enabled", "is_template"]
    search_fields = ["name", "description", "text"]
    list_select_related = ["updated_by"]
    readonly_fields = [
        "principals",
        "is_template",
        "created_at",
        "created_by",
        "updated_at",
        "updated_by",
        "history",
    ]
    fields = ["name", "description", "enabled", "text", *readonly_fields]
    form = AccessPolicyForm
    change_list_template = "admin/policies/accesspolicy/change_list.html"

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "text":
            kwargs["widget"] = PolicyTextWidget(search_url=reverse("admin:policies_principal_search"))
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "text" and field is not None:
            field.widget.attrs.update(
                {"rows": 8, "cols": 100, "class": "vLargeTextField policy-text", "spellcheck": "false"}
            )
        return field

    @admin.display(description="principals named")
    def principals(self, obj: AccessPolicy) -> str:
        named = authoring.principals_named(obj.text or "")
        if not named:
            return "-"
        return format_html_join(
            "", '<div class="named-principal"><code>{}</code> is {}</div>', ((uid, who) for uid, who in named)
        )

    def principal_search_view(self, request: HttpRequest) -> HttpResponse:
        if not (self.has_add_permission(request) or self.has_change_permission(request)):
            return JsonResponse({"results": []}, status=403)
        choices = authoring.principal_search(request.GET.get("q", ""))
        return JsonResponse({"results": [choice.as_json() for choice in choices]})

    @admin.display(description="versions")
    def history(self, obj: AccessPolicy) -> str:
        if obj.pk is None:
            return "-"
        url = reverse("admin:policies_accesspolicyversion_changelist") + f"?policy_name={obj.name}"
        return format_html('<a href="{}">{} version(s)</a>', url, obj.versions.count())

    def save_model(self, request: HttpRequest, obj: AccessPolicy, form: Any, change: bool) -> None:
        # The form already ran the whole-set validation (AccessPolicy.clean). The impact is
        # computed again here, against the set as it is now, so the audit says what this save did.
        result = impact.compute_impact(impact.PolicySet.current(), _proposed(obj))
        summary = result.summary() | {"confirmed": IMPACT_CONFIRMED in request.POST}
        services.access_policy_save(policy=obj, actor=request.user, impact_summary=summary)

    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        if request.method == "POST" and IMPACT_CONFIRMED not in request.POST:
            preview = self._impact_preview(request, object_id)
            if preview is not None:
                return preview
        response = super().changeform_view(request, object_id, form_url, extra_context)
        # The Cedar editor, on this page only: cedar-wasm needs WebAssembly compiled, and CodeMirror
        # adds <style> elements (with the nonce the template gives it, change_form.html).
        response._csp_update = {"script-src": ["'wasm-unsafe-eval'"], "style-src": [NONCE]}  # type: ignore[attr-defined]
        return response

    def _impact_preview(self, request: HttpRequest, object_id: str | None) -> HttpResponse | None:
        """The decisions this edit would change, to confirm or cancel; None: save as usual.

        A form with errors, or an edit that changes no decision and ends no live
        subscription, goes straight on (the errors are shown, or it saves)."""
        obj = self.get_object(request, unquote(object_id)) if object_id else None
        if object_id and obj is None:
            return None
        if not (self.has_change_permission(request, obj) if obj else self.has_add_permission(request)):
            return None
        form = self.get_form(request, obj, change=obj is not None)(request.POST, request.FILES, instance=obj)
        if not form.is_valid():
            return None
        result = impact.compute_impact(impact.PolicySet.current(), _proposed(form.instance))
        if result.empty:
            return None
        cancel = (
            reverse("admin:policies_accesspolicy_change", args=[obj.pk])
            if obj
            else reverse("admin:policies_accesspolicy_changelist")
        )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Confirm the change to {form.instance.name}",
            "opts": self.model._meta,
            "policy": form.instance,
            "impact": result.as_json(),
            "fields": [
                (key, value) for key, values in request.POST.lists() for value in values if key != "csrfmiddlewaretoken"
            ],
            "confirm_name": IMPACT_CONFIRMED,
            "cancel_url": cancel,
        }
        return TemplateResponse(request, "admin/policies/accesspolicy/impact.html", context)

    def delete_model(self, request: HttpRequest, obj: AccessPolicy) -> None:
        try:
            services.access_policy_delete(policy=obj, actor=request.user)
        except ValidationError as exc:
            self.message_user(request, "; ".join(exc.messages), messages.ERROR)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[AccessPolicy]) -> None:
        for policy in queryset:
            self.delete_model(request, policy)

    def get_urls(self) -> list[URLPattern]:
        own = [
            path("simulator/", self.admin_site.admin_view(self.simulator_view), name="policies_simulator"),
            path(
                "principals/", self.admin_site.admin_view(self.principal_search_view), name="policies_principal_search"
            ),
            path("export/", self.admin_site.admin_view(self.export_view), name="policies_export"),
            path("import/", self.admin_site.admin_view(self.import_view), name="policies_import"),
        ]
        return own + super().get_urls()

    def simulator_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            return HttpResponseRedirect(reverse("admin:index"))
        form = SimulatorForm(request.POST or None)
        result = None
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                principal = principal_for(
                    username=data["username"], token=data["token"], client_ip=data["client_ip"] or None
                )
                resolve_usernames(data["resource_type"], data["resource_id"], data["attrs"])  # a form error if not
                result = simulate(
                    principal=principal,
                    action=data["action"],
                    resource_type=data["resource_type"],
                    resource_id=data["resource_id"],
                    attrs=data["attrs"],
                    at=data["at"],
                )
            except SimulationError as exc:
                form.add_error(None, str(exc))
        context = {
            **self.admin_site.each_context(request),
            "title": "Policy simulator",
            "opts": self.model._meta,
            "form": form,
            "result": result,
        }
        return TemplateResponse(request, "admin/policies/simulator.html", context)

    def export_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            return HttpResponseRedirect(reverse("admin:index"))
        body = json.dumps(services.policies_export(), indent=2)
        response = HttpResponse(body, content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="policies-{timezone.now():%Y%m%d-%H%M%S}.json"'
        return response

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not (self.has_add_permission(request) and self.has_change_permission(request)):
            return HttpResponseRedirect(reverse("admin:index"))
        form = ImportForm(request.POST or None, request.FILES or None)
        errors: list[str] = []
        preview = None
        content = ""
        if request.method == "POST" and form.is_valid():
            content = form.cleaned_data["content"]
            confirmed = IMPACT_CONFIRMED in request.POST
            try:
                found = services.policies_import_impact(content=content)
                if confirmed or found.empty:
                    summary = found.summary() | {"confirmed": confirmed}
                    result = services.policies_import(content=content, actor=request.user, impact_summary=summary)
                else:
                    preview = found.as_json()
            except ValidationError as exc:
                errors = exc.messages
            if not errors and preview is None:
                self.message_user(
                    request,
                    f"Imported {result.access_policies} access and {result.rate_limit_policies} rate-limit "
                    f"policies ({result.removed} removed).",
                )
                return HttpResponseRedirect(reverse("admin:policies_accesspolicy_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Import policies",
            "opts": self.model._meta,
            "form": form,
            "errors": errors,
            "impact": preview,
            "content": content if preview else "",
            "confirm_name": IMPACT_CONFIRMED,
        }
        return TemplateResponse(request, "admin/policies/import.html", context)


@admin.register(AccessPolicyVersion)
class AccessPolicyVersionAdmin(admin.ModelAdmin[AccessPolicyVersion]):
    class Media:
        css = {"all": ["policies/policy_text.css"]}  # .policy-diff (no style="" under the CSP)

    list_display = ["policy_name", "number", "change", "enabled", "created_at", "created_by"]
    list_filter = ["change", "policy_name"]
    search_fields = ["policy_name", "text"]
    list_select_related = ["created_by"]
    readonly_fields = [
        "policy_name",
        "number",
        "change",
        "enabled",
        "description",
        "text",
        "diff_view",
        "created_at",
        "created_by",
    ]
    fields = list(readonly_fields)
    actions = ["restore"]

    @admin.display(description="diff to the previous version")
    def diff_view(self, obj: AccessPolicyVersion) -> str:
        return format_html('<pre class="policy-diff">{}</pre>', obj.diff or "(no change)")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AccessPolicyVersion | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AccessPolicyVersion | None = None) -> bool:
        return False

    @admin.action(description="Restore the selected version", permissions=["view"])
    def restore(self, request: HttpRequest, queryset: QuerySet[AccessPolicyVersion]) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to restore.", messages.WARNING)
            return
        version = queryset.get()
        try:
            services.access_policy_restore(version=version, actor=request.user)
        except ValidationError as exc:
            self.message_user(request, f"Not restored: {'; '.join(exc.messages)}", messages.ERROR)
        else:
            self.message_user(request, f"Restored {version.policy_name} to version {version.number}.")


@admin.register(ShareGrant)
class ShareGrantAdmin(admin.ModelAdmin[ShareGrant]):
    """Shares are template-linked policies: add one, or delete it to revoke it.

    A share is granted or revoked, never edited: adding one for a user or group
    that already has a role on that resource replaces it (as the share dialog
    does). Both are audited and reach live sessions (policy version).
    """

    list_display = ["link", "resource", "principal", "role", "created_at", "created_by"]
    list_filter = ["resource_type", "template", "principal_type"]
    search_fields = ["user__username", "group__name", "resource_id", "principal_id"]
    list_select_related = ["template", "user", "group", "created_by"]
    autocomplete_fields = ["user", "group"]
    fields_shown = ["link", "template", "principal", "resource", "principal_type", "principal_id", "created_at"]

    def get_fields(self, request: HttpRequest, obj: ShareGrant | None = None) -> Any:
        if obj is None:
            return ["template", "user", "group", "resource_type", "resource_id"]
        return [*self.fields_shown, "created_by"]

    def get_readonly_fields(self, request: HttpRequest, obj: ShareGrant | None = None) -> Any:
        return [] if obj is None else [*self.fields_shown, "created_by"]

    def has_change_permission(self, request: HttpRequest, obj: ShareGrant | None = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial: dict[str, Any] = dict(super().get_changeform_initial_data(request))
        if "template" not in initial:
            viewer = AccessPolicy.objects.filter(name=SHARE_TEMPLATES["viewer"], is_template=True).first()
            if viewer is not None:
                initial["template"] = viewer.pk
        return initial

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        # One query per resource type for the titles of the page's rows.
        wanted: dict[str, set[int]] = {}
        for grant in changelist.result_list:
            if grant.resource_id.isdigit():
                wanted.setdefault(grant.resource_type, set()).add(int(grant.resource_id))
        titles: dict[tuple[str, str], str] = {}
        for resource_type, ids in wanted.items():
            model = _resource_model(resource_type)
            if model is not None:
                for obj in model.objects.filter(pk__in=ids):
                    titles[(resource_type, str(obj.pk))] = str(obj)
        for grant in changelist.result_list:
            grant.resource_title = titles.get((grant.resource_type, grant.resource_id), "")
        return changelist

    @admin.display(description="policy id")
    def link(self, obj: ShareGrant) -> str:
        return obj.link_id

    @admin.display(description="shared with", ordering="principal_id")
    def principal(self, obj: ShareGrant) -> str:
        return obj.principal_label

    @admin.display(description="resource", ordering="resource_id")
    def resource(self, obj: ShareGrant) -> str:
        title = getattr(obj, "resource_title", None)
        model = _resource_model(obj.resource_type)
        if title is None and model is not None:
            found = model.objects.filter(pk=obj.resource_id).first() if obj.resource_id.isdigit() else None
            title = str(found) if found is not None else ""
        label = f"{obj.resource_type} {obj.resource_id}"
        if not title or model is None:
            return f"{label} (missing)" if model is not None else label
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[obj.resource_id])
        return format_html('<a href="{}">{}</a>: {}', url, label, title)

    def save_model(self, request: HttpRequest, obj: ShareGrant, form: Any, change: bool) -> None:
        # The form validated the share (ShareGrant.clean); the service replaces another
        # role of the same user or group, audits and moves the policy version.
        grant = services.share_grant(
            resource_type=obj.resource_type,
            resource_id=obj.resource_id,
            role=obj.template.name,
            user=obj.user,
            group=obj.group,
            actor=request.user,
        )
        obj.pk = grant.pk
        obj.created_at, obj.created_by = grant.created_at, grant.created_by

    def delete_model(self, request: HttpRequest, obj: ShareGrant) -> None:
        services.share_grant_delete(grant=obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ShareGrant]) -> None:
        for grant in queryset.select_related("template", "user", "group"):
            services.share_grant_delete(grant=grant, actor=request.user)


IMPACT_CONFIRMED = "_impact_confirmed"


def _proposed(policy: AccessPolicy) -> impact.PolicySet:
    return impact.proposed_with_edit(name=policy.name, text=policy.text, enabled=policy.enabled, pk=policy.pk)


def _resource_model(resource_type: str) -> Any:
    label = ShareGrant.RESOURCE_MODELS.get(resource_type)
    return apps.get_model(label) if label else None


@admin.register(RateLimitPolicy)
class RateLimitPolicyAdmin(admin.ModelAdmin[RateLimitPolicy]):
    list_display = ["name", "enabled", "scope", "actions", "channel_pattern", "role", "limits", "strategy"]
    list_filter = ["enabled", "scope", "strategy"]
    search_fields = ["name", "description", "channel_pattern"]
    list_select_related = ["role"]

    def save_model(self, request: HttpRequest, obj: RateLimitPolicy, form: Any, change: bool) -> None:
        services.rate_limit_policy_save(policy=obj)

    def delete_model(self, request: HttpRequest, obj: RateLimitPolicy) -> None:
        services.rate_limit_policy_delete(policy=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[RateLimitPolicy]) -> None:
        for policy in queryset:
            services.rate_limit_policy_delete(policy=policy)


@admin.register(ConnectionLimitPolicy)
class ConnectionLimitPolicyAdmin(admin.ModelAdmin[ConnectionLimitPolicy]):
    list_display = ["name", "scope", "max_connections", "role", "enabled", "updated_at"]
    list_filter = ["enabled", "scope"]
    list_select_related = ["role"]
    search_fields = ["name", "description"]


@admin.register(PolicyTestCase)
class PolicyTestCaseAdmin(admin.ModelAdmin[PolicyTestCase]):
    """Expected decisions: every access-policy save and import runs the enabled ones and is refused if one fails."""

    list_display = ["name", "enabled", "principal", "action", "resource_type", "resource_id", "expected", "result"]
    list_filter = ["enabled", "expected", "action", "resource_type"]
    search_fields = ["name", "principal", "resource_id", "note"]
    fields = list(policytests.CASE_FIELDS)  # the same fields export/import carries

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        current = impact.PolicySet.current()
        results = policytests.run_cases(current.sources, current.links, changelist.result_list)
        by_pk = {result.case.pk: result for result in results}
        for case in changelist.result_list:
            case.run_result = by_pk.get(case.pk)
        return changelist

    @admin.display(description="against the current set")
    def result(self, obj: PolicyTestCase) -> str:
        found = getattr(obj, "run_result", None)
        if found is None:
            return "-" if not obj.enabled else ""
        if found.passed:
            return format_html('<span class="{}">passes</span>', "policy-test-pass")
        return format_html('<span class="policy-test-fail">fails</span>: {}', found.message())
