"""Dashboard pages: the list (with a create form) and one dashboard, live."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from dashboards import selectors, services
from dashboards.api.views import dashboard_data
from dashboards.models import Dashboard, Widget
from webconnect.authorization import authorize
from webconnect.identity import principal_from_request


class DashboardForm(forms.Form):
    title = forms.CharField(max_length=200)
    visibility = forms.ChoiceField(choices=Dashboard.Visibility.choices, initial="private")


@login_required
@require_http_methods(["GET", "POST"])
def dashboard_list(request: HttpRequest) -> HttpResponse:
    form = DashboardForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        dashboard = services.dashboard_create(owner=request.user, **form.cleaned_data)
        return redirect("dashboards:detail", dashboard_id=dashboard.pk)
    dashboards = selectors.dashboard_list(principal_from_request(request))
    return render(request, "dashboards/dashboard_list.html", {"dashboards": dashboards, "form": form})


@login_required
def dashboard_detail(request: HttpRequest, dashboard_id: int) -> HttpResponse:
    principal = principal_from_request(request)
    dashboard = Dashboard.objects.select_related("owner").filter(pk=dashboard_id).first()
    if dashboard is None or not selectors.dashboard_rights(principal, dashboard)[0]:
        raise Http404("No such dashboard.")
    # Only widgets whose channel this viewer may read carry a channel and paths
    # into the page; the others arrive as "no access" with a title only.
    data: dict[str, Any] = dashboard_data(principal, dashboard, with_widgets=True)
    data["updated_at"] = data["updated_at"].isoformat()
    data["notes"] = selectors.value_notes(dashboard)
    may_share = bool(authorize(principal, "share", selectors.dashboard_resource(dashboard)))
    context: dict[str, Any] = {
        "dashboard": dashboard,
        "config": data,
        "can_edit": data["can_edit"],
        "share_dialog": share_dialog(dashboard) if may_share else None,
    }
    if data["can_edit"]:
        context["kind_choices"] = Widget.Kind.choices
        context["channel_suggestions"] = selectors.channel_suggestions(principal)
    return render(request, "dashboards/dashboard_detail.html", context)


def share_dialog(dashboard: Dashboard) -> dict[str, Any]:
    """What the share dialog partial (templates/sharing/share_dialog.html) needs."""
    return {
        "noun": "dashboard",
        "title": dashboard.title,
        "owner": dashboard.owner.get_username(),
        "shares_url": reverse("dashboards:api-dashboard-shares", args=[dashboard.pk]),
    }
