"""An asyncio circuit breaker: stop calling a dependency that keeps failing, probe it, recover.

Written by hand: pybreaker has no asyncio support and purgatory lets every waiting caller through in
half-open. Here half-open admits exactly ONE probe; everyone else is rejected until it settles.

closed --(N consecutive failures, or failure ratio over the last calls)--> open
open --(reset timeout elapsed, next call)--> half-open (one probe)
half-open --probe succeeds--> closed;  half-open --probe fails--> open

``asyncio.CancelledError`` and errors ``is_failure`` rejects (the caller's fault, e.g. a 4xx) do not count.
State lives in plain attributes changed only between awaits, so it is safe for any number of asyncio tasks
on one event loop (it is not meant to be shared across threads).
"""

from __future__ import annotations

import enum
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ..errors import DependencyUnavailable

T = TypeVar("T")


class BreakerState(enum.Enum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


Listener = Callable[[str, BreakerState, BreakerState], None]


def _always_a_failure(_: BaseException) -> bool:
    return True


@dataclass(frozen=True)
class BreakerPolicy:
    failure_threshold: int = 5  # consecutive failures that open the circuit
    failure_ratio: float = 0.5  # ...or this share of failures among the last `window_size` calls
    window_size: int = 20
    minimum_calls: int = 10  # the ratio applies once the window holds at least this many calls
    reset_timeout: float = 30.0  # seconds open before one probe is let through


class CircuitOpen(DependencyUnavailable):
    code = "circuit_open"
    default_detail = "A dependency is failing; calls to it are paused. Retry later."


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        policy: BreakerPolicy,
        *,
        is_failure: Callable[[BaseException], bool] = _always_a_failure,
        listeners: Sequence[Listener] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.policy = policy
        self.is_failure = is_failure
        self.listeners = list(listeners)
        self.clock = clock
        self._state = BreakerState.CLOSED
        self._consecutive_failures = 0
        self._outcomes: deque[bool] = deque(maxlen=policy.window_size)  # True = failure
        self._opened_at = 0.0
        self._probe_in_flight = False

    @property
    def state(self) -> BreakerState:
        return self._state

    def retry_after(self) -> float:
        """Seconds until an open circuit lets a probe through (0 when it is not open)."""
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.policy.reset_timeout - self.clock())

    async def call(self, func: Callable[[], Awaitable[T]]) -> T:
        """Run ``func`` under the breaker; raise ``CircuitOpen`` (503 + Retry-After) when it is open."""
        probing = self._admit()
        try:
            result = await func()
        except Exception as exc:
            if self.is_failure(exc):
                self._record_failure()
            else:
                self._release(probing)
            raise
        except BaseException:  # cancellation or interpreter exit says nothing about the dependency
            self._release(probing)
            raise
        self._record_success()
        return result

    def _admit(self) -> bool:
        """Let the call through or reject it; True when this call is the half-open probe."""
        if self._state is BreakerState.OPEN and self.retry_after() <= 0:
            self._move_to(BreakerState.HALF_OPEN)
        if self._state is BreakerState.CLOSED:
            return False
        if self._state is BreakerState.HALF_OPEN and not self._probe_in_flight:
            self._probe_in_flight = True
            return True
        wait = self.retry_after() if self._state is BreakerState.OPEN else self.policy.reset_timeout
        raise CircuitOpen(
            f"Calls to {self.name} are paused after repeated failures.",
            retry_after=max(1, math.ceil(wait)),
        )

    def _release(self, probing: bool) -> None:
        # The call said nothing about the dependency's health: free the probe slot, change nothing.
        if probing:
            self._probe_in_flight = False

    def _record_success(self) -> None:
        self._consecutive_failures = 0
        self._outcomes.append(False)
        if self._state is BreakerState.HALF_OPEN:
            self._probe_in_flight = False
            self._move_to(BreakerState.CLOSED)

    def _record_failure(self) -> None:
        self._consecutive_failures += 1
        self._outcomes.append(True)
        if self._state is BreakerState.HALF_OPEN:
            self._probe_in_flight = False
            self._open()
        elif self._state is BreakerState.CLOSED and self._should_open():
            self._open()

    def _should_open(self) -> bool:
        if self._consecutive_failures >= self.policy.failure_threshold:
            return True
        calls = len(self._outcomes)
        return calls >= self.policy.minimum_calls and sum(self._outcomes) / calls >= self.policy.failure_ratio

    def _open(self) -> None:
        self._opened_at = self.clock()
        self._move_to(BreakerState.OPEN)

    def _move_to(self, state: BreakerState) -> None:
        previous, self._state = self._state, state
        if state is BreakerState.CLOSED:
            self._consecutive_failures = 0
            self._outcomes.clear()
        for listener in self.listeners:
            listener(self.name, previous, state)
