"""The application API over the control socket (issue 15): ``connect``, ``send``, ``listen`` and
``peers``, each a thin shape around ``NodeApi`` so a game in any language gets what an
in-process caller gets.

- ``connect`` and ``send`` answer one JSON result; the API's typed errors become
  ``command_failed`` with the API's reason as ``reason`` (``unknown_peer``, ``no_path``,
  ``connect_failed``, ``delivery_failed``, ``too_large``, ``closed``).
- ``send`` sends its messages concurrently, at most ``window`` in the air at once: the peer's
  window (coordinator.window_max_messages) admits them in call order and makes the rest wait, so
  a large ``count`` costs time, never memory (each generated message is made when its turn comes).
- ``listen`` is a stream of received messages (each taken from the inbox, so each goes to one
  listener) and peer events. Its two waits run as tasks in this service's TaskGroup; closing the
  stream cancels them. A message taken from the inbox but not yet written when the client goes
  away is lost to that client: the inbox's exactly-once ends at its subscriber.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

from node.proto.coordinator import PathKey, PeerView
from node.proto.peer_uri import parse_peer_uri
from node.services.app_args import DEFAULT_SIZE, INDEX_BYTES, ConnectArgs, DisconnectArgs, SendArgs
from node.services.control import Command, CommandRefused
from node.services.control_args import ArgumentError
from node.services.coordinator import ApiError, InboundMessage, NodeApi, PeerEvent, Traversal
from node.services.service import Service

Result = dict[str, Any]

# How long connect may take beyond its own timeout (the command's ceiling is its argument's).
_MARGIN_S = 5.0
# A send waits for acknowledgements, retries included: it may take long, and is bounded anyway.
SEND_TIMEOUT_S = 3600.0
_FILLER = b"bitcraps" * 1024


def path_json(key: PathKey) -> dict[str, str]:
    return {"kind": key.kind.value, "endpoint": key.remote}


def refused(exc: ApiError) -> CommandRefused:
    """The API's typed error as the control socket's, its reason by name (``unknown_peer``)."""
    return CommandRefused(exc.reason.name.lower(), str(exc))


def generated(index: int, size: int) -> bytes:
    """Generated message ``index``: the index (INDEX_BYTES, big-endian), then filler to ``size``."""
    head = index.to_bytes(INDEX_BYTES, "big")
    fill = size - INDEX_BYTES
    body = _FILLER[:fill] if fill <= len(_FILLER) else (_FILLER * (fill // len(_FILLER) + 1))[:fill]
    return head + body


@dataclass(frozen=True, slots=True)
class AppControlView:
    listeners: int  # listen streams open now

    def to_json(self) -> dict[str, Any]:
        return {"listeners": self.listeners}


class AppControl(Service[AppControlView]):
    """Owns the listen streams' tasks; gives the daemon its control commands (``commands()``)."""

    name = "app_control"

    def __init__(self, api: NodeApi, window: int, max_payload: int, max_request_bytes: int) -> None:
        super().__init__()
        self._api = api
        self._window = window
        self._max_payload = max_payload
        self._max_request_bytes = max_request_bytes
        self._group: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listeners = 0

    async def _start(self, stack: AsyncExitStack) -> None:
        self._group = await stack.enter_async_context(asyncio.TaskGroup())
        stack.callback(self._cancel_all)  # before the TaskGroup waits for them

    def _cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def status(self) -> AppControlView:
        return AppControlView(self._listeners)

    def commands(self) -> dict[str, Command]:
        return {
            "connect": Command(self.connect, args=ConnectArgs, timeout_s=600.0 + _MARGIN_S),
            "send": Command(
                self.send,
                args=SendArgs,
                timeout_s=SEND_TIMEOUT_S,
                max_request_bytes=self._max_request_bytes,
            ),
            "listen": Command(self.listen),
            "peers": Command(self.peers),
            "disconnect": Command(self.disconnect, args=DisconnectArgs),
        }

    # -- connect ---------------------------------------------------------------------------

    async def connect(self, args: ConnectArgs) -> Result:
        started = time.monotonic()
        uris = [parse_peer_uri(uri) for uri in args.uris]  # checked by ConnectArgs
        try:
            connected = await self._api.connect(args.peer_id, uris, args.timeout_s)
        except ApiError as exc:
            raise refused(exc) from None
        return {
            "peer_id": connected.peer,
            "path": path_json(connected.active),
            "paths": [path_json(key) for key in connected.paths],
            "direct": connected.direct,
            "method": connected.method.value,
            "time_to_first_ms": _ms(connected.time_to_first_s),
            "time_to_direct_ms": _ms(connected.time_to_direct_s),
            "elapsed_ms": round((time.monotonic() - started) * 1000, 3),
        }

    # -- send ------------------------------------------------------------------------------

    async def send(self, args: SendArgs) -> Result:
        started = time.monotonic()
        if args.messages_b64 is not None:
            payloads = [_decode(i, text) for i, text in enumerate(args.messages_b64)]
            total = len(payloads)
            make: Callable[[int], bytes] = payloads.__getitem__
        else:
            assert args.count is not None  # SendArgs: one or the other
            size = DEFAULT_SIZE if args.size is None else args.size
            if size > self._max_payload:
                raise CommandRefused(
                    "too_large", f"messages of {size} bytes to {args.peer_id}; at most {self._max_payload}"
                )
            total = args.count
            make = lambda index: generated(index, size)  # noqa: E731 - one line, one use
        paths: Counter[str] = Counter()
        done = [0]
        indices = iter(range(total))
        priority, reliable = args.priority.priority, args.reliable

        async def worker(turns: Iterator[int]) -> None:
            for index in turns:
                sent = await self._api.deliver(args.peer_id, make(index), priority, reliable)
                paths["unknown" if sent.path is None else sent.path.value] += 1
                done[0] += 1

        try:
            async with asyncio.TaskGroup() as workers:
                for _ in range(min(total, self._window)):
                    workers.create_task(worker(indices))
        except* ApiError as group:
            first = group.exceptions[0]
            assert isinstance(first, ApiError)
            failed = refused(first)
            raise CommandRefused(
                failed.why, f"{done[0]} of {total} messages {_done_word(reliable)}, then {first}"
            ) from None
        return {
            "peer_id": args.peer_id,
            "sent": done[0],
            "acknowledged": done[0] if reliable else 0,
            "paths": dict(sorted(paths.items())),
            "elapsed_ms": round((time.monotonic() - started) * 1000, 3),
        }

    # -- disconnect ------------------------------------------------------------------------

    async def disconnect(self, args: DisconnectArgs) -> Result:
        closed = await self._api.disconnect(args.peer_id)
        return {"peer_id": args.peer_id, "closed": [kind.value for kind in closed]}

    # -- peers -----------------------------------------------------------------------------

    def peers(self) -> Result:
        return {"peers": [_peer_json(view, self._api.traversal(view.peer)) for view in self._api.peers()]}

    # -- listen ----------------------------------------------------------------------------

    def listen(self) -> AsyncIterator[Result]:
        if self._group is None:
            raise CommandRefused("closed", "listen: the node is not running")
        return _Listen(self._api, self._spawn, self._ended)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        assert self._group is not None
        task = self._group.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _ended(self, delta: int) -> None:
        self._listeners += delta


class _Listen:
    """An async iterator of listen's items: the next of two waits (a message, a peer event)."""

    def __init__(
        self,
        api: NodeApi,
        spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]],
        count: Callable[[int], None],
    ) -> None:
        self._messages = api.messages()
        self._events = api.peer_events()  # subscribed now: nothing from here on is missed
        self._spawn = spawn
        self._count = count
        self._message: asyncio.Task[InboundMessage | None] | None = None
        self._event: asyncio.Task[PeerEvent | None] | None = None
        self._closed = False
        count(1)

    def __aiter__(self) -> _Listen:
        return self

    async def __anext__(self) -> Result:
        if self._closed:
            raise StopAsyncIteration
        if self._message is None:
            self._message = self._spawn(_next(self._messages))
        if self._event is None:
            self._event = self._spawn(_next(self._events))
        await asyncio.wait((self._message, self._event), return_when=asyncio.FIRST_COMPLETED)
        # A message first when both are ready: the event says nothing the message needs.
        if self._message.done():
            message = self._message.result()
            self._message = None
            if message is None:
                raise StopAsyncIteration  # the node is stopping
            return _message_json(message)
        event = self._event.result()
        self._event = None
        if event is None:
            raise StopAsyncIteration
        return {
            "type": "peer",
            "peer_id": event.peer,
            "state": event.state.value,
            "path": path_json(event.path),
        }

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._count(-1)
        pending = [t for t in (self._message, self._event) if t is not None]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)  # they end as cancelled; nothing to re-raise from them
        for iterator in (self._messages, self._events):
            close = getattr(iterator, "aclose", None)
            if close is not None:
                await close()


T = TypeVar("T")


async def _next(iterator: AsyncIterator[T]) -> T | None:
    with contextlib.suppress(StopAsyncIteration):
        return await anext(iterator)
    return None


def _message_json(message: InboundMessage) -> Result:
    return {
        "type": "message",
        "peer_id": message.peer,
        "message_id": message.message_id,
        "priority": message.priority.name.lower(),
        "path": message.path.value,
        "data_b64": base64.b64encode(message.data).decode("ascii"),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _traversal_json(traversal: Traversal | None) -> Result | None:
    if traversal is None:
        return None
    return {
        "outcome": traversal.outcome.value,
        "method": None if traversal.method is None else traversal.method.value,
        "direct_endpoint": traversal.direct,
        "time_to_direct_ms": _ms(traversal.direct_after_s),
    }


def _peer_json(view: PeerView, traversal: Traversal | None = None) -> Result:
    return {
        "peer_id": view.peer,
        "active": None if view.active is None else path_json(view.active),
        "traversal": _traversal_json(traversal),
        "paths": [
            {
                "kind": path.kind,
                "endpoint": path.endpoint,
                "state": path.state.value,
                "health": path.health.name.lower(),
                "score": round(path.score, 4),
                "rtt_ms": None if path.rtt_ms is None else round(path.rtt_ms, 3),
                "loss": path.loss,
                "breaker": path.breaker.value,
            }
            for path in view.paths
        ],
    }


def _decode(index: int, text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ArgumentError(f"messages_b64[{index}]", "is not base64") from None


def _done_word(reliable: bool) -> str:
    return "acknowledged" if reliable else "sent"
