import asyncio

from agent.aio import wait_event


async def test_wait_event_set_and_timeout() -> None:
    event = asyncio.Event()
    assert not await wait_event(event, 0.01)
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_event(event, 5)


async def test_wait_event_never_swallows_a_cancellation() -> None:
    """The cancellation lands in the same loop turn as the event: it must still cancel the waiter."""
    for _ in range(50):
        event = asyncio.Event()
        task = asyncio.ensure_future(wait_event(event, 5))
        await asyncio.sleep(0)
        event.set()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            continue
        raise AssertionError("wait_event returned instead of raising CancelledError")
