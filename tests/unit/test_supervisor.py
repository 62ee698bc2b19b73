"""The worker supervisor: a loop that ends unexpectedly is restarted; one that keeps ending gives the process up."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest

from services.common.observability import WORKER_RESTARTS
from services.common.settings import Settings
from services.common.supervisor import Loop, Supervisor
from services.launch.registry import service_app

pytestmark = pytest.mark.asyncio


def supervisor(loops: dict[str, Loop], *, restart_limit: int = 5, gave_up: list[str] | None = None) -> Supervisor:
    return Supervisor(
        loops,
        restart_limit=restart_limit,
        restart_window_s=60,
        on_give_up=(lambda: gave_up.append("called")) if gave_up is not None else None,
        first_delay_s=0.01,
        max_delay_s=0.05,
    )


class Flaky:
    """A worker loop whose first runs end the given ways; later runs work until stopped."""

    def __init__(self, *endings: BaseException | None) -> None:
        self.endings = list(endings)
        self.runs = 0
        self.steady = asyncio.Event()

    async def __call__(self, stop: asyncio.Event) -> None:
        self.runs += 1
        await asyncio.sleep(0)
        if self.endings:
            ending = self.endings.pop(0)
            if ending is not None:
                raise ending
            return  # returns although nobody stopped it
        self.steady.set()
        await stop.wait()


async def eventually_steady(loop: Flaky, workers: Supervisor) -> None:
    await asyncio.wait_for(loop.steady.wait(), 5)
    await asyncio.sleep(0)
    assert workers.alive() and workers.healthy()


class TestRestarts:
    async def test_a_loop_that_fails_is_restarted(self) -> None:
        loop = Flaky(RuntimeError("a bug"))
        before = WORKER_RESTARTS.labels("flaky")._value.get()
        workers = supervisor({"flaky": loop})
        workers.start()
        await eventually_steady(loop, workers)
        assert loop.runs == 2
        assert WORKER_RESTARTS.labels("flaky")._value.get() == before + 1
        await workers.shutdown()

    async def test_a_cancellation_nobody_asked_for_is_a_failure_not_a_stop(self) -> None:
        # What a stray CancelledError out of a client's close looked like: the loop's task ended, silently.
        loop = Flaky(asyncio.CancelledError())
        workers = supervisor({"consumer": loop})
        workers.start()
        await eventually_steady(loop, workers)
        assert loop.runs == 2
        await workers.shutdown()

    async def test_a_loop_that_returns_before_the_stop_is_restarted(self) -> None:
        loop = Flaky(None, None)
        workers = supervisor({"relay": loop})
        workers.start()
        await eventually_steady(loop, workers)
        assert loop.runs == 3
        await workers.shutdown()

    async def test_a_loop_waiting_to_be_restarted_is_alive_but_not_ready(self) -> None:
        loop = Flaky(RuntimeError("down"))
        workers = Supervisor({"slow": loop}, restart_limit=5, restart_window_s=60, first_delay_s=30)
        workers.start()
        while loop.runs < 1 or "slow" in workers.running:
            await asyncio.sleep(0.01)
        assert workers.alive() and not workers.healthy()
        await asyncio.wait_for(workers.shutdown(), 2)  # the stop ends the wait before the restart


class TestGivingUp:
    async def test_a_loop_that_keeps_ending_gives_up_once_and_liveness_fails(self) -> None:
        always = Flaky(*[RuntimeError(f"failure {n}") for n in range(100)])
        steady = Flaky()
        gave_up: list[str] = []
        workers = supervisor({"broken": always, "fine": steady}, restart_limit=3, gave_up=gave_up)
        workers.start()
        await asyncio.wait_for(workers.tasks["broken"], 5)
        assert always.runs == 4  # the first run and 3 restarts
        assert gave_up == ["called"]
        assert workers.gave_up_on == "broken"
        assert not workers.alive() and not workers.healthy()

        app = service_app("events", "worker", Settings(_env_file=None))
        app.state.workers = workers
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            response = await client.get("/healthz")
        assert response.status_code == 503
        assert response.json()["status"] == "failing" and "broken" in response.json()["workers"]
        await workers.shutdown()
        assert gave_up == ["called"]

    async def test_a_supervision_cancelled_from_outside_gives_up(self) -> None:
        steady = Flaky()
        gave_up: list[str] = []
        workers = supervisor({"fine": steady}, gave_up=gave_up)
        workers.start()
        await asyncio.wait_for(steady.steady.wait(), 5)
        workers.tasks["fine"].cancel()  # not the shutdown: nothing would restart that loop any more
        with contextlib.suppress(asyncio.CancelledError):
            await workers.tasks["fine"]
        assert gave_up == ["called"] and workers.gave_up_on == "fine" and not workers.alive()
        await workers.shutdown()

    async def test_ends_outside_the_window_are_forgotten(self) -> None:
        loop = Flaky(RuntimeError("one"), RuntimeError("two"), RuntimeError("three"))
        gave_up: list[str] = []
        workers = Supervisor(
            {"flaky": loop},
            restart_limit=1,
            restart_window_s=0.02,
            on_give_up=lambda: gave_up.append("called"),
            first_delay_s=0.05,
            max_delay_s=0.05,
        )
        workers.start()
        await eventually_steady(loop, workers)
        assert gave_up == []
        await workers.shutdown()


class TestShutdown:
    async def test_a_stop_is_not_a_failure_and_a_loop_deaf_to_it_is_cancelled(self) -> None:
        async def deaf(stop: asyncio.Event) -> None:
            await asyncio.Event().wait()

        steady = Flaky()
        gave_up: list[str] = []
        workers = supervisor({"fine": steady, "deaf": deaf}, restart_limit=0, gave_up=gave_up)
        workers.start()
        await asyncio.wait_for(steady.steady.wait(), 5)
        await asyncio.wait_for(workers.shutdown(timeout_s=0.1), 5)
        assert all(task.done() for task in workers.tasks.values())
        assert gave_up == [] and workers.gave_up_on is None
        assert steady.runs == 1


async def test_a_service_app_answers_alive_without_workers_and_with_running_ones() -> None:
    app = service_app("events", "worker", Settings(_env_file=None))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        assert (await client.get("/healthz")).status_code == 200
        steady = Flaky()
        app.state.workers = workers = supervisor({"fine": steady})
        workers.start()
        await asyncio.wait_for(steady.steady.wait(), 5)
        assert (await client.get("/healthz")).json() == {"status": "ok", "process": "events"}
        await workers.shutdown()
