"""Docker's event stream: a ring of recent events plus live subscribers (moby daemon/events).

Publishing is thread-safe and never blocks: a subscriber is a callback (the API route hands in one that
schedules onto its event loop). ``since``/``until`` replay comes from the ring of the last 256 events.
Filters are moby's: type, event (action), container/image/network/volume (ID or name), label, scope.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ketch.common.errors import InvalidArgument

__all__ = ["Event", "EventBus", "EventFilter"]

RING_SIZE = 256
_FILTER_KEYS = ("type", "event", "container", "image", "network", "volume", "label", "scope", "daemon", "plugin",
                "node", "service", "secret", "config")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Event:
    type: str  # container, image, network, volume, daemon
    action: str  # create, start, die, ...
    actor_id: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    time_ns: int = 0

    def to_api(self) -> dict[str, Any]:
        seconds = self.time_ns // 10**9
        out: dict[str, Any] = {}
        if self.type == "container":  # the pre-1.22 fields docker still sends for containers
            out["status"] = self.action
            out["id"] = self.actor_id
            out["from"] = self.attributes.get("image", "")
        elif self.type == "image":
            out["status"] = self.action
            out["id"] = self.actor_id
        out.update({
            "Type": self.type,
            "Action": self.action,
            "Actor": {"ID": self.actor_id, "Attributes": dict(self.attributes)},
            "scope": "local",
            "time": seconds,
            "timeNano": self.time_ns,
        })  # fmt: skip
        return out


@dataclass(frozen=True, slots=True)
class EventFilter:
    values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_api(cls, raw: Mapping[str, Iterable[str]]) -> EventFilter:
        for key in raw:
            if key not in _FILTER_KEYS:
                raise InvalidArgument(f"invalid filter '{key}'")
        return cls({k: tuple(v) for k, v in raw.items()})

    def _any(self, key: str, *candidates: str) -> bool:
        wanted = self.values.get(key)
        return not wanted or any(c and c in wanted for c in candidates)

    def match(self, event: Event) -> bool:
        attrs = event.attributes
        if not self._any("type", event.type):
            return False
        action = event.action.partition(":")[0]  # "exec_start: sh" matches "exec_start"
        if not self._any("event", event.action, action):
            return False
        if not self._any("scope", "local"):
            return False
        for kind in ("container", "network", "volume"):
            if kind in self.values and (event.type != kind or not self._any(
                    kind, event.actor_id, event.actor_id[:12], attrs.get("name", ""))):  # fmt: skip
                return False
        if "image" in self.values:
            image = attrs.get("image", "") if event.type == "container" else event.actor_id
            if not self._any("image", image, image.partition(":")[0], attrs.get("name", "")):
                return False
        for label in self.values.get("label", ()):
            key, sep, value = label.partition("=")
            if key not in attrs or (sep and attrs[key] != value):
                return False
        return True


class EventBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ring: deque[Event] = deque(maxlen=RING_SIZE)
        self._subscribers: dict[int, Callable[[Event], None]] = {}
        self._next = 0

    def publish(
        self, type: str, action: str, actor_id: str, attributes: Mapping[str, str] | None = None
    ) -> Event:
        event = Event(type, action, actor_id, dict(attributes or {}), time.time_ns())
        with self._lock:
            self._ring.append(event)
            subscribers = list(self._subscribers.values())
        for callback in subscribers:
            try:
                callback(event)
            except Exception:  # a subscriber going away must not stop the others
                pass
        return event

    def subscribe(
        self, callback: Callable[[Event], None], *, since_ns: int | None = None
    ) -> tuple[int, list[Event]]:
        """Register ``callback``; returns its token and the ring's events at or after ``since_ns``
        (none when ``since_ns`` is None), taken atomically with the registration so nothing falls between."""
        with self._lock:
            token = self._next
            self._next += 1
            self._subscribers[token] = callback
            past = [] if since_ns is None else [e for e in self._ring if e.time_ns >= since_ns]
        return token, past

    def unsubscribe(self, token: int) -> None:
        with self._lock:
            self._subscribers.pop(token, None)

    def recent(self, since_ns: int, until_ns: int | None = None) -> list[Event]:
        with self._lock:
            return [
                e for e in self._ring if e.time_ns >= since_ns and (until_ns is None or e.time_ns <= until_ns)
            ]
