"""The middleware pipeline and plugin request methods, configured in settings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from tests.realtime.conftest import bearer
from webconnect.realtime import pipeline, protocol

pytestmark = pytest.mark.django_db(transaction=True)


async def shout(ctx: pipeline.FrameContext, frame: protocol.Frame) -> protocol.Frame | None:
    """Enriches: upper-cases a publish's text."""
    if frame.type == "publish" and isinstance(frame.payload, dict) and "text" in frame.payload:
        return replace(frame, payload={**frame.payload, "text": str(frame.payload["text"]).upper()})
    return frame


async def drop_secrets(ctx: pipeline.FrameContext, frame: protocol.Frame) -> protocol.Frame | None:
    """Drops publishes to chat.secret silently."""
    return None if frame.type == "publish" and frame.channel == "chat.secret" else frame


async def whoami(ctx: pipeline.FrameContext, payload: Any) -> Any:
    return {"user_id": ctx.principal.user.pk, "connection": ctx.connection_id}


@pytest.fixture
def custom_pipeline(settings: Any) -> Iterator[None]:
    settings.REALTIME_PIPELINE = [
        "webconnect.realtime.pipeline.validate_payload",
        "tests.realtime.test_pipeline.drop_secrets",
        "tests.realtime.test_pipeline.shout",
    ]
    settings.REALTIME_REQUEST_METHODS = ["whoami=tests.realtime.test_pipeline.whoami"]
    pipeline.reset()
    yield
    pipeline.reset()


async def test_transformers_modify_and_drop_frames(
    custom_pipeline: None, alice: Any, open_ws: Callable[..., Any], token_for: Any
) -> None:
    a = await open_ws(bearer(await token_for("alice")))
    await a.call("subscribe", channel="chat.loud")
    await a.call("subscribe", channel="chat.secret")
    await a.send("publish", {"text": "hi"}, channel="chat.loud", id=None)
    assert (await a.recv_type("message"))["payload"] == {"text": "HI"}
    await a.send("publish", {"text": "psst"}, channel="chat.secret", id=None)
    assert await a.nothing()


async def test_a_plugin_request_method(
    custom_pipeline: None, alice: Any, open_ws: Callable[..., Any], token_for: Any
) -> None:
    a = await open_ws(bearer(await token_for("alice")))
    response = await a.call("request", None, method="whoami")
    assert response["payload"]["user_id"] == alice.pk
    assert (await a.call("request", 7, method="echo"))["payload"] == 7  # built-ins stay


def test_a_bad_pipeline_setting_is_a_clear_configuration_error(settings: Any) -> None:
    from django.core.exceptions import ImproperlyConfigured

    settings.REALTIME_PIPELINE = ["no.such.transformer"]
    pipeline.reset()
    try:
        with pytest.raises(ImproperlyConfigured, match=r"no\.such\.transformer"):
            pipeline.transformers()
    finally:
        pipeline.reset()


def test_namespace_schema_must_be_a_valid_json_schema() -> None:
    from webconnect.models import Namespace

    namespace = Namespace(name="typed", payload_schema={"type": "no-such-type"})
    with pytest.raises(ValidationError) as info:
        namespace.full_clean()
    assert "payload_schema" in info.value.message_dict
    Namespace(name="typed", payload_schema={"type": "object"}).full_clean()


def test_the_migration_installs_the_chat_namespace() -> None:
    from webconnect.models import Namespace

    chat = Namespace.objects.get(name="chat")
    assert chat.presence and chat.join_leave and chat.client_publish and chat.history_size > 0
