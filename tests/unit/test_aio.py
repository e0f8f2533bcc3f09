import asyncio

from agent.aio import OnFirstUse, TaskOwner, Timers, cancel_and_wait, spawn, wait_event, wait_get


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
        await asyncio.sleep(0)  # scenario: one loop turn, so the task reaches its first await
        event.set()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            continue
        raise AssertionError("wait_event returned instead of raising CancelledError")


async def test_cancel_and_wait_cancels_again_a_task_that_swallowed_one() -> None:
    """A task that ignores its first cancellation (as wait_for can before 3.12) is cancelled again."""
    swallowed = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            swallowed.set()
        await asyncio.Event().wait()

    task = spawn(stubborn(), "test.stubborn")
    await asyncio.sleep(0)  # scenario: one loop turn, to its first await
    pending = await cancel_and_wait([task], recancel_s=0.01)
    assert swallowed.is_set()
    assert task.cancelled()
    assert not pending
    assert task.get_name() == "test.stubborn"


async def test_cancel_and_wait_gives_up_after_its_timeout() -> None:
    released = asyncio.Event()

    async def stuck() -> None:
        while not released.is_set():
            try:
                await released.wait()
            except asyncio.CancelledError:
                continue  # ignores every cancellation until released

    task = spawn(stuck(), "test.stuck")
    await asyncio.sleep(0)  # scenario: one loop turn, so the task reaches its first await
    assert await cancel_and_wait([task], timeout_s=0.05, recancel_s=0.01) == {task}
    released.set()
    await task


async def test_wait_get_item_and_timeout() -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    assert await wait_get(queue, 0.01) is None
    assert await wait_get(queue, 0) is None
    asyncio.get_running_loop().call_soon(queue.put_nowait, 7)
    assert await wait_get(queue, 5) == 7


async def test_timers_cancel_leaves_nothing_to_fire() -> None:
    fired: list = []
    timers = Timers()
    timers.call_later(0.01, fired.append, 1)
    timers.call_later(0, fired.append, 2)
    assert timers.pending == 2
    await asyncio.sleep(0)  # scenario: one loop turn, the zero-delay timer fires
    await asyncio.sleep(0)  # scenario: one loop turn, so the task reaches its first await
    timers.cancel()
    assert timers.pending == 0
    done = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, done.set)
    await done.wait()
    assert fired == [2]


async def test_on_first_use_makes_once() -> None:
    made = OnFirstUse(asyncio.Event)
    assert made.made is None
    first = made.get()
    assert made.get() is first
    assert made.made is first


async def test_task_owner_reports_the_first_task_to_end() -> None:
    owner = TaskOwner(prefix="test")

    async def ends() -> str:
        return "done"

    owner.start("forever", asyncio.Event().wait())
    owner.start("ends", ends())
    ended = await owner.wait_any(asyncio.Event())
    assert ended is not None
    assert ended.get_name() == "test.ends"
    await owner.cancel(owner.names)
    assert owner.names == []


async def test_timers_once_keeps_one_pending_timer_per_key() -> None:
    fired: list = []
    timers = Timers()
    timers.once("rate", 0, lambda: fired.append("a"))
    timers.once("rate", 0, lambda: fired.append("b"))  # one of a kind is pending: ignored
    assert timers.pending == 1
    done = asyncio.Event()
    asyncio.get_running_loop().call_later(0.02, done.set)
    await done.wait()
    assert fired == ["a"]
    timers.once("rate", 0, lambda: fired.append("c"))  # fired, so a new one may start
    timers.cancel()
    timers.once("rate", 10, lambda: fired.append("d"))  # cancel forgot the key too
    assert timers.pending == 1
    timers.cancel()
