import asyncio

from node.transports.channel import EventChannel


async def test_offer_reports_full_and_producers_wait_for_the_consumer() -> None:
    channel: EventChannel[int] = EventChannel(2)
    assert channel.offer(1) is True
    assert channel.offer(2) is False  # at the limit: the producer must wait
    waiting = asyncio.ensure_future(channel.wait_for_space())
    await asyncio.sleep(0)
    assert not waiting.done()
    items = channel.__aiter__()
    assert await items.__anext__() == 1
    await asyncio.wait_for(waiting, 1)
    assert await items.__anext__() == 2
    channel.close()
    assert [i async for i in items] == []


async def test_close_ends_a_waiting_consumer_after_the_items_offered() -> None:
    channel: EventChannel[str] = EventChannel(10)
    got: list[str] = []

    async def consume() -> None:
        async for item in channel:
            got.append(item)

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0)
    channel.offer("a")
    channel.offer("b")
    channel.close()
    await asyncio.wait_for(task, 1)
    assert got == ["a", "b"]


async def test_the_limit_is_on_the_weight_of_the_items_held() -> None:
    channel: EventChannel[str] = EventChannel(5)
    got: list[str] = []

    async def consume() -> None:
        async for item in channel:
            got.append(item)

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0)  # the consumer waits on an empty channel
    assert channel.offer("batch of 3", 3) is True
    assert channel.offer("batch of 4", 4) is False  # 7 >= 5: the producer must wait
    assert len(channel) == 7
    await asyncio.wait_for(channel.wait_for_space(), 1)
    channel.close()
    await asyncio.wait_for(task, 1)
    assert got == ["batch of 3", "batch of 4"]
    assert len(channel) == 0
