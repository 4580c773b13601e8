"""The one timer of a sans-IO core, on the event loop: ``get_timer()`` -> one ``loop.call_at``.

A core (STUN, TURN, the stream link, the NAT probe) says when it next needs the clock with
``get_timer()`` (an absolute loop-time deadline, or None) and acts on it in ``handle_timer(now)``.
The driver feeds the core its input, writes what the core wants sent, and then calls ``rearm()``;
when the deadline comes, ``CoreTimer`` calls ``handle_timer(loop.time())``, then the driver's
``flush`` (which writes out what the timer queued and handles its events), then re-arms itself.

``rearm()`` is on the hot paths (the TLS link calls it after every read), so it is cheap:
one ``get_timer()`` call and a comparison when the deadline did not move, and nothing scheduled
either when it moved *later* (a link's keepalive deadline moves with every read): the handle
armed for the earlier time stays, and when it fires with the deadline now later it re-arms for
the new one instead of calling the core. Only a deadline that moved earlier, or went away,
cancels the handle. The core is thus never asked to handle its timer before its deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class CoreTimer:
    """``loop.call_at`` kept at a core's ``get_timer()``: ``rearm()`` after every input,
    ``close()`` once (then ``rearm()`` does nothing). A deadline already past fires on the next
    turn of the loop, never inside ``rearm()``."""

    __slots__ = ("_at", "_closed", "_flush", "_get_timer", "_handle", "_handle_timer", "_loop")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        get_timer: Callable[[], float | None],
        handle_timer: Callable[[float], None],
        flush: Callable[[], None],
    ) -> None:
        self._loop = loop
        self._get_timer = get_timer
        self._handle_timer = handle_timer
        self._flush = flush
        self._handle: asyncio.Handle | None = None
        self._at: float | None = None  # the time the handle is armed for
        self._closed = False

    @property
    def armed_at(self) -> float | None:
        """When the loop will call back (at or before the core's deadline), or None."""
        return self._at

    def rearm(self) -> None:
        at = self._get_timer()
        armed = self._at
        if at is None:
            if self._handle is not None:
                self._handle.cancel()
                self._handle = self._at = None
        elif armed is None or at < armed:
            if self._closed:
                return
            if self._handle is not None:
                self._handle.cancel()
            self._handle = self._loop.call_at(at, self._fire)
            self._at = at
        # else: the same deadline, or a later one that the armed handle will re-arm for

    def close(self) -> None:
        self._closed = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = self._at = None

    def _fire(self) -> None:
        armed = self._at
        self._handle = self._at = None
        at = self._get_timer()
        if at is not None and armed is not None and at <= armed:
            self._handle_timer(self._loop.time())
            self._flush()
        self.rearm()
