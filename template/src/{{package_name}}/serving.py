"""Serving the application: uvicorn's server with a drain before it stops, and a supervisor of workers.

On SIGTERM or SIGINT a worker turns readiness 503 and goes on serving for the drain period
(``APP_SHUTDOWN_DRAIN_SECONDS``), each response saying ``Connection: close`` so that clients and proxies
move elsewhere. Then it stops listening, lets uvicorn finish the requests in flight within
``APP_SHUTDOWN_TIMEOUT_SECONDS``, and runs the lifespan shutdown.

Closing a listening socket resets every connection still waiting in the kernel's accept queue, though its
client may already have sent a request. So whoever closes the listener first takes what is queued and
serves it, and shuts the listener down in the same step. Several workers share one listener (the supervisor
binds it, so a port in use fails at start-up): the supervisor has them stop accepting one at a time, and
only the last takes the queue and shuts the listener down for every process holding it.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from types import FrameType
from typing import cast

import uvicorn

from .health import begin_shutdown
from .logging import get_logger

# How often a draining server looks at the clock and at the supervisor's orders.
TICK_SECONDS = 0.05
# After the listener closes: time for the connections accepted last to deliver their request, before
# uvicorn closes the idle ones (a connection that already has its answer closes by itself).
LAST_REQUESTS_SECONDS = 1.0
# How long the supervisor waits for a worker to stop accepting before moving on to the next.
STOP_ACCEPTING_SECONDS = 5.0
# What uvicorn's workers exit with when they fail before serving: restarting them would fail the same way.
STARTUP_FAILURE = 3
SUPERVISOR_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True)
class StopTurn:
    """A worker's place in the supervisor's stop order: ``go`` says stop accepting now, ``last`` that no
    other worker still accepts (so this one takes the queue and shuts the listener), ``done`` answers."""

    go: Event
    done: Event
    last: Event


class DrainingServer(uvicorn.Server):
    """uvicorn's server, draining before it stops: readiness off at the signal, serving on meanwhile."""

    def __init__(
        self, config: uvicorn.Config, *, drain_seconds: float = 0, turn: StopTurn | None = None
    ) -> None:
        super().__init__(config)
        self.drain_seconds = drain_seconds
        self.turn = turn
        self.supervisor = os.getppid()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        begin_shutdown()
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self.drain()
        await self.stop_listening()
        await super().shutdown(sockets)

    async def drain(self) -> None:
        """Serve on (readiness says 503) until the drain period ends; a second Ctrl+C cuts it short."""
        deadline = time.monotonic() + self.drain_seconds
        ticks = 0
        while time.monotonic() < deadline and not self.force_exit:
            await asyncio.sleep(TICK_SECONDS)
            ticks += 1
            await self.on_tick(ticks)  # keeps the Date header current
        if self.turn is not None:
            await self._wait_for_turn(self.turn)

    async def on_tick(self, counter: int) -> bool:
        if self.orphaned and not self.should_exit:
            # Killed without a chance to stop its workers, the supervisor can no longer stop this one.
            get_logger(__name__).warning("supervisor_gone", supervisor=self.supervisor)
            self.handle_exit(signal.SIGTERM, None)
        return await super().on_tick(counter)

    @property
    def orphaned(self) -> bool:
        """A supervised worker whose supervisor has died."""
        return self.turn is not None and os.getppid() != self.supervisor

    async def _wait_for_turn(self, turn: StopTurn) -> None:
        await poll(lambda: turn.go.is_set() or self.force_exit or self.orphaned)

    async def stop_listening(self) -> None:
        """Accept no more; if no other process accepts either, serve what is queued and shut the listener."""
        listeners = [
            socket.socket(fileno=os.dup(listener.fileno()))
            for server in self.servers
            for listener in server.sockets
        ]
        for server in self.servers:
            server.close()
        last = self.turn is None or self.turn.last.is_set() or self.force_exit or self.orphaned
        queued: list[socket.socket] = []
        for listener in listeners:
            if last:
                queued += take_queue(listener, self.config.backlog)
                shut_listener(listener)
            listener.close()
        if self.turn is not None:
            self.turn.done.set()
        if queued:
            get_logger(__name__).info("queued_connections_served", connections=len(queued))
        loop = asyncio.get_running_loop()
        for connection in queued:
            await loop.connect_accepted_socket(self._protocol_factory(loop), connection, ssl=self.config.ssl)
        if not self.force_exit:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LAST_REQUESTS_SECONDS):
                    await poll(lambda: not self.server_state.connections)

    def _protocol_factory(self, loop: asyncio.AbstractEventLoop) -> Callable[[], asyncio.Protocol]:
        # The arguments uvicorn's own listener gives each connection's protocol.
        protocol_class = cast("Callable[..., asyncio.Protocol]", self.config.http_protocol_class)
        return lambda: protocol_class(
            config=self.config, server_state=self.server_state, app_state=self.lifespan.state, _loop=loop
        )


async def poll(done: Callable[[], bool]) -> None:
    """Until ``done()``: neither a multiprocessing Event nor uvicorn's set of connections can be awaited."""
    while not done():  # noqa: ASYNC110 - nothing to await instead, see above
        await asyncio.sleep(TICK_SECONDS)


def take_queue(listener: socket.socket, limit: int) -> list[socket.socket]:
    """The connections the kernel has completed but nobody has accepted yet (at most ``limit``)."""
    taken: list[socket.socket] = []
    listener.setblocking(False)
    while len(taken) < limit:
        try:
            connection, _ = listener.accept()
        except ConnectionAbortedError:
            continue
        except OSError:  # nothing queued (EAGAIN), or no file descriptor left for one more
            break
        taken.append(connection)
    return taken


def shut_listener(listener: socket.socket) -> None:
    """Stop listening for every process holding the socket, not only this one: further connections are
    refused. Linux does this on shutdown(); elsewhere the socket listens until its last holder closes it."""
    with contextlib.suppress(OSError):
        listener.shutdown(socket.SHUT_RD)


def run_worker(
    config: uvicorn.Config, sockets: list[socket.socket], drain_seconds: float, turn: StopTurn
) -> None:
    """A worker process: the server on the supervisor's listener, stopping when the supervisor says."""
    DrainingServer(config, drain_seconds=drain_seconds, turn=turn).run(sockets=sockets)


@dataclass(frozen=True)
class Worker:
    process: BaseProcess
    turn: StopTurn


class Supervisor:
    """Runs ``config.workers`` workers on one listener; replaces a worker that dies; stops them in order.

    On SIGTERM or SIGINT every worker starts draining at once; after the drain period they stop accepting
    one at a time (the last takes the accept queue), then finish their requests and exit.
    """

    def __init__(self, config: uvicorn.Config, *, drain_seconds: float) -> None:
        self.config = config
        self.drain_seconds = drain_seconds
        self.context = multiprocessing.get_context("spawn")
        self.last = self.context.Event()
        self.workers: list[Worker] = []
        self.stopping = threading.Event()
        self.exit_code = 0

    def run(self) -> int:
        listener = self.config.bind_socket()
        for sig in SUPERVISOR_SIGNALS:
            signal.signal(sig, self._on_signal)
        try:
            self.workers = [self._start_worker(listener) for _ in range(self.config.workers)]
            while not self.stopping.wait(0.5):
                self._replace_dead_workers(listener)
            self._stop_workers()
        finally:
            listener.close()
        return self.exit_code

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self.stopping.set()

    def _start_worker(self, listener: socket.socket) -> Worker:
        turn = StopTurn(go=self.context.Event(), done=self.context.Event(), last=self.last)
        args = (self.config, [listener], self.drain_seconds, turn)
        process = self.context.Process(target=run_worker, args=args)
        process.start()
        get_logger(__name__).info("worker_started", pid=process.pid)
        return Worker(process, turn)

    def _replace_dead_workers(self, listener: socket.socket) -> None:
        for index, worker in enumerate(self.workers):
            if worker.process.is_alive():
                continue
            if worker.process.exitcode == STARTUP_FAILURE:
                get_logger(__name__).error("worker_start_up_failed", pid=worker.process.pid)
                self.exit_code = STARTUP_FAILURE
                self.stopping.set()
                return
            exit_code = worker.process.exitcode
            get_logger(__name__).warning("worker_died", pid=worker.process.pid, exit_code=exit_code)
            self.workers[index] = self._start_worker(listener)

    def _stop_workers(self) -> None:
        started = time.monotonic()
        for worker in self.workers:
            if worker.process.pid is not None and worker.process.is_alive():
                os.kill(worker.process.pid, signal.SIGTERM)
        time.sleep(max(0.0, started + self.drain_seconds - time.monotonic()))
        *others, final = self.workers
        for worker in others:
            worker.turn.go.set()
            worker.turn.done.wait(STOP_ACCEPTING_SECONDS)
        self.last.set()
        final.turn.go.set()
        grace = (self.config.timeout_graceful_shutdown or 0) + STOP_ACCEPTING_SECONDS + LAST_REQUESTS_SECONDS
        deadline = time.monotonic() + grace
        for worker in self.workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                get_logger(__name__).error("worker_did_not_stop", pid=worker.process.pid)
                worker.process.kill()
                worker.process.join()
