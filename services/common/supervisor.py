"""Supervision of a worker's background loops: one that ends unexpectedly is restarted, and too many ends give up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from services.common.observability import WORKER_RESTARTS

logger = logging.getLogger("maillage.supervisor")

Loop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]

FIRST_RESTART_DELAY_S = 1.0
MAX_RESTART_DELAY_S = 30.0


class Supervisor:
    """Runs named loops until `stop` is set; each survives its own outages, so an end before `stop` is a fault.

    A loop that ends (returns, raises, or is hit by a cancellation nobody asked for) is restarted after a
    doubling delay. One that ended more than `restart_limit` times within `restart_window_s` cannot
    recover in this process: the supervisor gives up on the process, `alive()` turns false (the liveness
    probe fails) and `on_give_up` runs, which makes `maillage serve` exit non-zero so that compose's
    restart policy or Kubernetes starts a fresh process.
    """

    def __init__(
        self,
        loops: Mapping[str, Loop],
        *,
        restart_limit: int,
        restart_window_s: float,
        on_give_up: Callable[[], None] | None = None,
        first_delay_s: float = FIRST_RESTART_DELAY_S,
        max_delay_s: float = MAX_RESTART_DELAY_S,
    ) -> None:
        self.loops = dict(loops)
        self.restart_limit = restart_limit
        self.restart_window_s = restart_window_s
        self.on_give_up = on_give_up
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self.stop = asyncio.Event()
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.running: set[str] = set()  # loops running now, not waiting to be restarted
        self.gave_up_on: str | None = None  # the loop that could not be recovered

    def start(self) -> None:
        self.tasks = {
            name: asyncio.create_task(self._supervise(name, loop), name=name) for name, loop in self.loops.items()
        }
        for task in self.tasks.values():
            task.add_done_callback(self._on_supervision_end)

    async def shutdown(self, timeout_s: float = 20.0) -> None:
        """Let each loop finish what it is doing (consumers commit), then cancel what is still running."""
        self.stop.set()
        if not self.tasks:
            return
        _, pending = await asyncio.wait(self.tasks.values(), timeout=timeout_s)
        for task in pending:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*pending, return_exceptions=True)

    def alive(self) -> bool:
        """False once the supervisor gave up (or a supervising task itself ended): the liveness answer."""
        return self.gave_up_on is None and bool(self.tasks) and all(not task.done() for task in self.tasks.values())

    def healthy(self) -> bool:
        """Every loop is running now (none waits to be restarted): the readiness answer."""
        return self.alive() and self.running == set(self.loops)

    async def _supervise(self, name: str, loop: Loop) -> None:
        clock = asyncio.get_running_loop().time
        ends: deque[float] = deque()
        delay = self.first_delay_s
        while not self.stop.is_set():
            started = clock()
            self.running.add(name)
            error: BaseException | None = None
            try:
                await loop(self.stop)
                if self.stop.is_set():
                    return
                how = "returned while the worker runs"
            except asyncio.CancelledError as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # the shutdown's own cancellation
                if self.stop.is_set():
                    return
                how, error = "ended on a cancellation nobody asked for", exc
            except Exception as exc:
                how, error = "failed", exc
            finally:
                self.running.discard(name)
            now = clock()
            ends.append(now)
            while now - ends[0] > self.restart_window_s:
                ends.popleft()
            if len(ends) > self.restart_limit:
                self._give_up(name, f"{how}, its end number {len(ends)} within {self.restart_window_s:.0f} s", error)
                return
            # A loop that ran a good while before ending starts again soon; one that keeps ending, less and less often.
            delay = self.first_delay_s if now - started >= self.max_delay_s else delay
            logger.error("worker loop %s %s; restarting it in %.1f s", name, how, delay, exc_info=error)
            WORKER_RESTARTS.labels(name).inc()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), delay)
            delay = min(delay * 2, self.max_delay_s)

    def _on_supervision_end(self, task: asyncio.Task[None]) -> None:
        # A supervising task that ends before the stop without giving up was hit by what no loop should raise
        # (SystemExit, a cancellation from outside): nothing restarts that loop any more.
        if self.stop.is_set() or self.gave_up_on is not None:
            return
        error = None if task.cancelled() else task.exception()
        self._give_up(task.get_name(), "lost its supervision", error)

    def _give_up(self, name: str, why: str, error: BaseException | None) -> None:
        self.gave_up_on = name
        logger.critical(
            "worker loop %s %s: this process cannot recover it and stops, to be restarted "
            "(MAILLAGE_WORKER_RESTART_LIMIT, MAILLAGE_WORKER_RESTART_WINDOW_S)",
            name,
            why,
            exc_info=error,
        )
        if self.on_give_up is not None:
            self.on_give_up()
