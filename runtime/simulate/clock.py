"""The manager's clock in virtual time: sleeping lets the simulated world run instead."""

from __future__ import annotations

from mummi_spec.runtime.manager import Clock
from mummi_spec.runtime.simulate.world import Engine


class VirtualClock(Clock):
    """``now`` is the engine's time; ``sleep`` runs the world for that long and returns."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine

    def now(self) -> float:
        return self.engine.now

    def sleep(self, seconds: float) -> None:
        self.engine.sleep(seconds)

    def wake(self) -> None:
        """Nothing waits in virtual time."""
