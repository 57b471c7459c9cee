"""CSRF tokens and the per-session rate limit of the signing endpoint.

The CSRF token is a random per-session value, signed with itsdangerous under the app's secret
key as Flask signs its session cookie (but with its own salt). The page embeds the token; the
script sends it back in ``X-CSRF-Token``. A custom header also means a cross-site page cannot
send the request without a CORS preflight, which this app never grants.
"""

from __future__ import annotations

import hmac
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable

from flask import current_app, session
from itsdangerous import BadData, URLSafeTimedSerializer

SESSION_KEY = "csrf"
HEADER = "X-CSRF-Token"
#: A page left open longer than this must be reloaded before the AI search works again.
MAX_AGE = 12 * 3600


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key or "", salt="csrf")


def csrf_token() -> str:
    """The token for this session's page, starting the session if there is none."""
    if SESSION_KEY not in session:
        session[SESSION_KEY] = secrets.token_urlsafe(32)
    return str(_serializer().dumps(session[SESSION_KEY]))


def check_csrf(token: str | None) -> str | None:
    """None when ``token`` belongs to this session, else a stable error code:
    ``no_session``, ``csrf_missing`` or ``csrf_invalid``."""
    expected = session.get(SESSION_KEY)
    if not isinstance(expected, str):
        return "no_session"
    if not token:
        return "csrf_missing"
    try:
        value = _serializer().loads(token, max_age=MAX_AGE)
    except BadData:
        return "csrf_invalid"
    if not isinstance(value, str) or not hmac.compare_digest(value, expected):
        return "csrf_invalid"
    return None


class RateLimiter:
    """At most ``limit`` events per ``window`` seconds for each key, in memory.

    Good for one process, which the demo is. ``clock`` is injectable for tests.
    """

    def __init__(self, limit: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1:
            raise ValueError(f"the rate limit must be at least 1 per window, got {limit}")
        self.limit = limit
        self.window = window
        self.clock = clock
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> float | None:
        """Record an event for ``key``. None if allowed, else seconds until one more is."""
        now = self.clock()
        with self._lock:
            if len(self._events) > 10_000:
                self._forget_idle(now)
            events = self._events.setdefault(key, deque())
            while events and events[0] <= now - self.window:
                events.popleft()
            if len(events) >= self.limit:
                return events[0] + self.window - now
            events.append(now)
            return None

    def _forget_idle(self, now: float) -> None:
        idle = [k for k, ev in self._events.items() if not ev or ev[-1] <= now - self.window]
        for key in idle:
            del self._events[key]


def retry_after(seconds: float) -> str:
    """A Retry-After value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))
