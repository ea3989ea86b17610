"""Login throttling: a password can't be guessed at network speed.

After ``max_failures`` failed logins within ``window_s`` for one account (or
``max_address_failures`` from one address, higher because many people may share an address),
further attempts for that account (or from that address) are refused for ``lockout_s`` — even
with the right password, so a guesser learns nothing from the answer. A success clears the
account's count. Kept in memory: a restart forgets it, which errs on the side of letting
people in.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

import param


class LoginThrottle(param.Parameterized):
    max_failures = param.Integer(default=5, bounds=(1, None), doc="Per account.")
    max_address_failures = param.Integer(default=50, bounds=(1, None), doc="Per client address.")
    window_s = param.Number(default=300.0, bounds=(1, None))
    lockout_s = param.Number(default=300.0, bounds=(1, None))

    def __init__(self, clock: Callable[[], float] = time.monotonic, **params: Any) -> None:
        super().__init__(**params)  # type: ignore[no-untyped-call]  # param leaves it untyped
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._locked_until: dict[str, float] = {}

    def retry_after(self, account: str, address: str) -> float:
        """Seconds until an attempt for ``account`` from ``address`` is allowed (0: now)."""
        now = self._clock()
        with self._lock:
            waits = [self._locked_until.get(k, 0.0) - now for k in self._keys(account, address)]
        return max(0.0, *waits)

    def failed(self, account: str, address: str) -> None:
        now = self._clock()
        with self._lock:
            for key in self._keys(account, address):
                q = self._failures[key]
                q.append(now)
                while q and q[0] < now - self.window_s:
                    q.popleft()
                limit = self.max_failures if key.startswith("account:") else self.max_address_failures
                if len(q) >= limit:
                    self._locked_until[key] = now + self.lockout_s
                    q.clear()

    def succeeded(self, account: str) -> None:
        with self._lock:
            key = f"account:{account.lower()}"
            self._failures.pop(key, None)
            self._locked_until.pop(key, None)

    @staticmethod
    def _keys(account: str, address: str) -> tuple[str, str]:
        return f"account:{account.lower()}", f"address:{address}"
