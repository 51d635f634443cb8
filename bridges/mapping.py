"""MQTT topics <-> channels: the namespace is the first topic level, `/` between levels becomes `.`.

`sensors/line1/temp` <-> `sensors.line1.temp`. A topic maps only if the channel it makes is a valid channel
name (protocol.CHANNEL_RE: letters, digits, `_ - : .` after the namespace) and no level is empty; a level
holding `.` has no channel (it would not map back to the same topic), nor does a wildcard or a `$` topic.
"""

from __future__ import annotations

from webconnect.realtime import protocol


def topic_to_channel(topic: str) -> str | None:
    levels = topic.split("/")
    if len(levels) < 2 or topic.startswith("$") or any(not level or "." in level for level in levels):
        return None
    if any(c in topic for c in "+#"):
        return None
    channel = ".".join(levels)
    return channel if protocol.valid_channel(channel) else None


def channel_to_topic(channel: str) -> str:
    return channel.replace(".", "/")


def namespace_filter(namespace: str) -> str:
    """The subscription that covers every channel of `namespace`."""
    return f"{namespace}/#"
