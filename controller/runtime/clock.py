"""The runtime's clock is the process-wide one: `controller/clock.py` (re-exported here)."""

from controller.clock import Clock, FakeClock, RealClock

__all__ = ["Clock", "FakeClock", "RealClock"]
