"""What jobs and streams are expected to do: the plan's ``expect`` blocks, else the papers'.

Draws are keyed by (seed, job name, purpose) through a hash rather than taken from one
sequential generator, so an instance's duration does not depend on the order in which
anything else happened: the same seed gives the same campaign.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist

from mummi_spec.plan import JobPlan, Role, StreamPlan

_HOUR = 3600.0
_STD = NormalDist()

# Per job type name: (mean, sd) in seconds, from the papers.
JOB_DEFAULTS: Mapping[str, tuple[float, float]] = {
    "createsim": (1.5 * _HOUR, 20 * 60.0),  # SC'21 §3 (2): "on average, takes ~1.5 hours"
    "backmapping": (2 * _HOUR, 30 * 60.0),  # SC'21 §3 (4): "takes ~2 hours on average"
    "createsims": (584.2, 81.3),  # mini-MuMMI Table 1, small system
}
# By role when the name is not known either. Persistent jobs run until their walltime.
SETUP_DEFAULT = JOB_DEFAULTS["createsim"]
SIMULATION_SHARE = 0.9  # a simulation without `expect` runs ~90 % of its walltime (sd 10 %)
# Streams without `expect`: SC'21 continuum snapshot every 90 s (~330 patches each: 6.8 M
# patches from 20,507 snapshots); simulation analyses every 4 min (RDFs "every 3-4 minutes").
PERSISTENT_EVERY, PERSISTENT_COUNT = 90.0, 330
SIMULATION_EVERY = 240.0


def uniform(seed: int, *parts: object) -> float:
    """A draw in (0, 1) fixed by ``seed`` and ``parts``."""
    text = "\x1f".join(map(str, (seed, *parts))).encode()
    n = int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")
    return (n + 0.5) / 2.0**64


@dataclass(frozen=True, slots=True)
class JobExpect:
    """How long one instance of a job type runs and how often it fails."""

    mean: float  # seconds; math.inf: runs until killed
    sd: float
    failure_rate: float
    walltime: float

    def duration(self, u: float) -> float:
        """Run time for the draw ``u``: a normal truncated to at least 5 % of the mean."""
        if math.isinf(self.mean) or self.sd <= 0:
            return self.mean
        lo = _STD.cdf((0.05 * self.mean - self.mean) / self.sd)
        return self.mean + self.sd * _STD.inv_cdf(lo + u * (1.0 - lo))


def job_expect(name: str, job: JobPlan) -> JobExpect:
    """The expectation for job type ``name`` of the plan."""
    exp = job.expect
    walltime = job.walltime
    mean, sd = exp.duration, exp.duration_sd
    if mean is None:
        if name in JOB_DEFAULTS:
            mean, sd_default = JOB_DEFAULTS[name]
        elif job.role == Role.PERSISTENT:
            mean, sd_default = math.inf, 0.0
        elif job.role == Role.SETUP:
            mean, sd_default = SETUP_DEFAULT
        else:
            mean, sd_default = SIMULATION_SHARE * walltime, 0.1 * walltime
        sd = sd_default if sd is None else sd
    return JobExpect(float(mean), float(sd or 0.0), exp.failure_rate, walltime)


@dataclass(frozen=True, slots=True)
class StreamExpect:
    """How often one producer writes items to a stream, after thinning."""

    every: float  # seconds between writes
    count: int  # items per write
    stands_for: float  # real items each simulated item stands for (>= 1)
    real_every: float  # seconds between the real writes


def stream_expect(stream: StreamPlan, producer_role: Role, producers: int,
                  items_per_hour: float) -> StreamExpect:
    """The stream's rate, thinned so that all ``producers`` write at most ``items_per_hour``.

    Thinning only changes how many items the stores and selectors see, never when jobs run;
    each simulated item then stands for several real ones.
    """
    every, count = stream.every, stream.count
    if every is None:  # no `expect` (the plan's count is then its default, 1)
        persistent = producer_role == Role.PERSISTENT
        every = PERSISTENT_EVERY if persistent else SIMULATION_EVERY
        count = PERSISTENT_COUNT if persistent else 1
    every, count = float(every), int(count or 1)
    rate = producers * count * _HOUR / every
    factor = max(1.0, rate / items_per_hour) if items_per_hour > 0 else 1.0
    if factor <= 1.0:
        return StreamExpect(every, count, 1.0, every)
    thinned = max(1, round(count / factor))
    return StreamExpect(every * factor * thinned / count, thinned, factor, every)
