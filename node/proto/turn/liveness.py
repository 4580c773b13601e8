"""Is the TURN server still there? Sans-IO bookkeeping for the client (node.proto.turn.client).

RFC 8656 has no server keepalive: a client learns that its server died only when a request goes
unanswered, and the next scheduled one (a Refresh) may be minutes away. A server killed without
an ICMP reaching us (SIGKILL behind a router that drops it) leaves the allocation looking alive
all that time. So, like consent freshness (RFC 7675 §5.1: a path with no answers is dead) and
pion's and libjuice's TURN clients, the client watches the server itself:

- *Silence while sending*: something (data, a request) went to the server after the last thing
  that came from it, and ``server_silence_s`` later nothing has come back: probe.
- *Idle*: nothing has come from the server for ``idle_probe_s``: probe, so a dead server is found
  before traffic needs it (and the NAT binding to the server is kept, < 30 s of conntrack).
- A *probe* is a Refresh keeping the lifetime (coturn answers it, a restarted server answers 437),
  retransmitted ``probe_tries`` times ``probe_interval_s`` apart (one send with a timeout of the
  same total on streams, whose transport retransmits); no answer: the allocation is lost.

Any datagram or stream bytes from the server count as hearing from it: a busy relay never probes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from node.proto.stun.transaction import Timing
from node.proto.turn.errors import TurnUsageError

# Sent-and-unanswered this long: ask the server. 1 s, not 2: with the delivery defaults a message
# is given up about 3.7 s after its first send (RTO, then 0.5, 1 and 2 s of backoff), and the
# silence, the probe's 1.5 s and the new allocation must all fit inside that.
SERVER_SILENCE_S: Final = 1.0
PROBE_INTERVAL_S: Final = 0.5  # RFC 8489 §6.2.1's initial RTO, not doubled: a short verdict
PROBE_TRIES: Final = 3
IDLE_PROBE_S: Final = 20.0  # under conntrack's 30 s for unreplied UDP, like the session keepalive


@dataclass(frozen=True, slots=True)
class Liveness:
    """How the client decides the server is gone (module docstring)."""

    server_silence_s: float = SERVER_SILENCE_S
    probe_interval_s: float = PROBE_INTERVAL_S
    probe_tries: int = PROBE_TRIES
    idle_probe_s: float = IDLE_PROBE_S

    def __post_init__(self) -> None:
        for name in ("server_silence_s", "probe_interval_s", "idle_probe_s"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise TurnUsageError(f"{name} must be a positive finite number, got {value}")
        if self.probe_tries < 1:
            raise TurnUsageError(f"probe_tries must be at least 1, got {self.probe_tries}")

    def probe_timing(self, *, stream: bool) -> Timing:
        """A probe's transaction: ``probe_tries`` sends ``probe_interval_s`` apart and one more
        interval to wait for the last answer; on a stream one send and the same total."""
        total = self.probe_tries * self.probe_interval_s
        if stream:
            return Timing(reliable=True, ti=total)
        interval = self.probe_interval_s
        return Timing(rto=interval, rc=self.probe_tries, rm=1, rto_cap=interval)


DEFAULT_LIVENESS: Final = Liveness()


class ServerWatch:
    """When the client last heard from its server and last sent to it, and when to look again.

    The client's data paths only store times here (``last_sent``, ``last_heard``) and arm
    ``check_at`` on the first send after a check, so the check runs at most once per
    ``server_silence_s`` however much traffic flows."""

    __slots__ = ("check_at", "last_heard", "last_probe", "last_sent", "liveness")

    def __init__(self, liveness: Liveness) -> None:
        self.liveness = liveness
        self.last_heard = -math.inf
        self.last_sent = -math.inf
        self.last_probe = -math.inf
        self.check_at: float | None = None

    def start(self, now: float) -> None:
        """The allocation exists: the server was just heard."""
        self.last_heard = now
        self.last_probe = now
        self.check_at = None

    def stop(self) -> None:
        self.check_at = None

    def sent(self, now: float) -> bool:
        """Something went to the server; True when that armed the check (the timer moved)."""
        self.last_sent = now
        if self.check_at is None:
            self.check_at = now + self.liveness.server_silence_s
            return True
        return False

    # ``due`` compares ``now`` with the very sums ``deadline`` returns, never ``now - t`` with a
    # span: in floats (t + span) - t can fall short of span (50.1 + 20.0 = 70.1, but 70.1 - 50.1 =
    # 19.999999999999996), and then ``handle_timer(deadline)`` did nothing while ``get_timer()``
    # stayed at that deadline: a driver whose clock reads exactly the deadline (virtual time, or a
    # coarse clock) re-fired the timer forever at 100% CPU. Invariant: when ``due(now)`` is False,
    # ``deadline() > now``.
    def _idle_at(self) -> float:
        return max(self.last_heard, self.last_probe) + self.liveness.idle_probe_s

    def deadline(self) -> float:
        """The next time ``due`` may say yes (the idle probe's time may move later meanwhile)."""
        idle = self._idle_at()
        return idle if self.check_at is None else min(self.check_at, idle)

    def due(self, now: float) -> bool:
        """At the deadline: True when the server must be probed now."""
        if self.check_at is not None and now >= self.check_at:
            self.check_at = None
            if self.last_sent > self.last_heard:
                answer_due = self.last_heard + self.liveness.server_silence_s
                if now >= answer_due:
                    return True
                # Heard since the check was armed, but sent again after that: look again
                # when the last answer is ``silence`` old (later than now, by the test above).
                self.check_at = answer_due
        return now >= self._idle_at()

    def probing(self, now: float) -> None:
        self.last_probe = now
        self.check_at = None
