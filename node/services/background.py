"""One background task owned by a component's AsyncExitStack (the node's services use it).

The task runs in an ``asyncio.TaskGroup`` entered on the stack; closing the stack cancels the task
first and then waits for it, so nothing outlives the component and a task's failure is raised
from the stack's close (STYLE.md: every task belongs to a TaskGroup some component owns).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from typing import Any


async def run_in_background(
    stack: AsyncExitStack, coro: Coroutine[Any, Any, None], name: str | None = None
) -> asyncio.Task[None]:
    tasks = await stack.enter_async_context(asyncio.TaskGroup())
    task = tasks.create_task(coro, name=name)
    stack.callback(task.cancel)  # runs before the TaskGroup waits for it
    return task
