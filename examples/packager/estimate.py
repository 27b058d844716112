"""The Accepted estimate: a build's time from what the packager measured (members, sizes, API latency, its own speed).

Rules (docs/packager.md, "The estimate"):

- A build waits on the API (``members * latency / W``: each text is one response, ``W`` fetched
  at once) and works the CPU: ``cpu = members * seconds_per_member + bytes * seconds_per_byte / P``.
  The per-member part (HTTP, zip entry, ``meta.json``: Python, under the GIL) runs on one core
  whatever ``W``; the per-byte part (deflate, hashing: zlib and hashlib release the GIL) is spread
  over ``P = min(W, cores)`` cores (:func:`usable_cores`). The two overlap as far as the fetch
  concurrency lets them: ``time = fixed + listing_left + max(wait, cpu) + min(wait, cpu) / W``
  (one fetch at a time, ``W = 1``: the sum; many: the larger of the two).
- ``seconds_per_member`` and ``seconds_per_byte`` are this packager's own, learned from its recent
  builds (kept in the process): each build moves the cost it mostly consisted of (see
  :func:`fit_costs`), held towards a prior so that one build cannot make them absurd; the first
  job uses the prior.
- The prior is this machine's: before the first estimate the packager times its own per-byte work
  (the :class:`~examples.packager.deflate.Deflater` on a fixed text-like buffer) and a per-member
  workload (:func:`measure_speed`, a few tens of milliseconds), and scales each by a ratio measured
  once (:data:`BYTE_RATIO`, :data:`MEMBER_RATIO`: what a real build costs per byte or member for
  each second the workload took on the same machine), clamped to 1/10 .. 10 of the fixed
  :data:`PRIOR_COSTS` (:func:`calibrated_costs`). ``Estimator(calibrate=False)`` keeps the fixed prior.
- Sizes come from the listing when it gives them (the reference server's ``text_bytes``),
  otherwise from the mean text size of recent builds (prior :data:`PRIOR_BYTES_PER_MEMBER`).
- Every input is clamped, so hostile counts or sizes (``10**400``) give a large, finite estimate.

Everything here is pure but :class:`Estimator`, which keeps the recent builds.
"""

from __future__ import annotations

import functools
import http.client
import io
import json
import logging
import math
import os
import random
import threading
import time
import zipfile
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from examples.packager.deflate import Deflater

__all__ = [
    "BYTE_RATIO",
    "CALIBRATION_CLAMP",
    "FIXED_SECONDS",
    "MEMBER_RATIO",
    "MIN_CPU_SHARE",
    "PRIOR_BYTES_PER_MEMBER",
    "PRIOR_COSTS",
    "Build",
    "Costs",
    "Estimator",
    "Speed",
    "Workload",
    "calibrate",
    "calibrated_costs",
    "cpu_seconds_of",
    "estimate_seconds",
    "fit_costs",
    "measure_speed",
    "usable_cores",
]

log = logging.getLogger(__name__)

MAX_MEMBERS: Final = 10**12
MAX_BYTES: Final = 1 << 60
MAX_LATENCY_SECONDS: Final = 600.0
MAX_ESTIMATE_SECONDS: Final = 10.0**9
"""About 32 years: any estimate is clamped to it, so it stays a finite number of seconds."""
MIN_CPU_SHARE: Final = 0.25
"""A build teaches the costs only if its CPU part is at least this share of its time."""
PRIOR_BYTES_PER_MEMBER: Final = 100 * 1024
"""Text size assumed per member when the listing gives no sizes and no build has been seen."""
FIXED_SECONDS: Final = 0.01
"""A build's cost whatever its size (the work dir's sweep, the bag's tag files, the store), measured:
3-6 ms for a one-member docset of 1 KiB (``python -m bench estimate``'s stub, 2 cores). It is taken
off every build's time before the rest teaches the costs, so it must not be guessed high: at 0.2 s
(before) a 0.35 s build of 64 large texts looked 40 % faster than it was, and the costs it taught
made the next job of many small texts 30 % too short."""


@dataclass(frozen=True)
class Costs:
    """What this packager's own work costs, in wall seconds on this machine.

    Attributes:
        seconds_per_member: per member, whatever its size (a request, a zip entry, ``meta.json``, the manifest).
        seconds_per_byte: per byte of text (read, hash, deflate, write, store).
    """

    seconds_per_member: float
    seconds_per_byte: float


PRIOR_COSTS: Final = Costs(seconds_per_member=0.001, seconds_per_byte=35e-9)
"""The first job's costs, measured on docsets other than the bench's rows (``python -m bench
estimate``'s stub, a shared 2-core machine, 8 fetches at once), less :data:`FIXED_SECONDS`:
2,000 texts of 1 KiB took 2.0 s, i.e. 1 ms of wall time per member besides its request's round
trip (the client's Python under the GIL, and the stub's share of the same cores); 16 texts of
1 MiB took 0.31 s, i.e. 35 ns per byte on one core (about 29 MB/s a core, 57 MB/s over 2)."""


CALIBRATION_BYTES: Final = 64 * 1024
"""Size of the text-like buffer :func:`measure_speed` deflates and hashes."""
CALIBRATION_MEMBERS: Final = 12
"""Members of :func:`measure_speed`'s per-member workload."""
CALIBRATION_REPEATS: Final = 5
"""Each workload is timed this many times, briefly; the fastest counts (the others met other work on the machine)."""
CALIBRATION_CLAMP: Final = 10.0
"""A calibrated cost stays within 1/10 .. 10 of :data:`PRIOR_COSTS`'s (a stalled probe cannot make it absurd)."""
MEMBER_RATIO: Final = 5.8
"""A build's wall seconds per member for each second :func:`measure_speed`'s per-member workload took
per member, on the same machine in the same process (see :data:`BYTE_RATIO`)."""
BYTE_RATIO: Final = 1.59
"""A build's wall seconds per byte on one core for each second the calibration's per-byte work took per byte.

Both ratios are dimensionless: a faster or slower machine moves the builds and the workloads
alike, so they stay while the costs in seconds do not. Measured by ``python -m bench.estimate
ratios`` (2026-12-07, AMD EPYC, 2 cores, Python 3.11.7, nothing else running: load average
below 2 from the run itself): per round, a calibration, then a build of 2,000 x 1 KiB and one of
16 x 1 MiB against ``bench/docset_stub.py`` (docsets other than the bench's rows), whose CPU parts
(less :data:`FIXED_SECONDS` and the API's share, as :func:`fit_costs` sees them) solve for the two
costs; the median of 15 rounds: member 5.8 (rounds 3.6-7.8), byte 1.59 (rounds 1.11-1.93). Earlier
runs the same day, with other work on the machine, read 6.0 and 1.68-1.83 (rounds 1.0-4.7: a build
of large texts takes twice as long when other work holds the second core, which a one-core
calibration does not see): measure them on a quiet machine. A quiet calibration there read
145 µs per member and 21.5 ns per byte, i.e. 0.87 ms and 39 ns: close to :data:`PRIOR_COSTS`."""


@dataclass(frozen=True)
class Speed:
    """What :func:`measure_speed` timed: this machine's speed now, in wall seconds.

    Attributes:
        member_seconds: the per-member workload, per member.
        byte_seconds: the per-byte work (deflate, CRC-32, SHA-256), per byte on one core.
        seconds: how long the whole measurement took.
    """

    member_seconds: float
    byte_seconds: float
    seconds: float = 0.0


@functools.cache
def _sample_text() -> bytes:
    """:data:`CALIBRATION_BYTES` of English-looking words, the same in every process (deflates about 2.5x)."""
    rng = random.Random(14)
    words = ["".join(rng.choices("etaoinshrdlucmfwypvbgkqjxz", k=rng.randint(2, 11))) for _ in range(2000)]
    picked = rng.choices(words, k=CALIBRATION_BYTES // 5)
    lines = [" ".join(picked[i : i + 12]) + ".\n" for i in range(0, len(picked), 12)]
    return "".join(lines).encode()[:CALIBRATION_BYTES]


_SAMPLE_META: Final = {
    "doc_id": "1721.1/123456",
    "title": "A Study of Calibration in Text-Like Buffers",
    "authors": ["Doe, Jane", "Roe, Richard"],
    "year": 2024,
    "department": "Department of Electrical Engineering and Computer Science",
    "degree": "Ph.D.",
    "text_bytes": 20480,
    "links": {"text": "https://example.org/api/docsets/1/0/text"},
}


def _byte_work(sample: bytes, level: int) -> None:
    """The packager's per-byte work on ``sample``: what a fetching thread does to a text's chunks."""
    deflater = Deflater(level=level)
    deflater.update(sample)  # one chunk, as the HTTP client gives them (up to 256 KiB)
    deflater.finish().close()


_SAMPLE_RESPONSE: Final = (
    b"HTTP/1.1 200 OK\r\nServer: BaseHTTP/0.6 Python/3.11.7\r\nDate: Mon, 07 Dec 2026 10:00:00 GMT\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 20480\r\nConnection: keep-alive\r\n\r\n"
)


def _member_work(members: int, level: int) -> None:
    """The packager's per-member Python, ``members`` times: a text response's headers parsed (as
    ``http.client`` does under urllib3), ``meta.json`` and a small text deflated, their zip entries'
    headers and manifest lines."""
    for i in range(members):
        response = io.BytesIO(_SAMPLE_RESPONSE)
        response.readline()
        headers = http.client.parse_headers(response)
        headers.get_content_charset(), headers.get("content-length")
        meta = {**_SAMPLE_META, "doc_id": f"1721.1/{i}"}
        body = json.dumps(meta, indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n"
        for name, data in (("meta.json", body), ("text.txt", body[:64])):
            deflater = Deflater(level=level)
            deflater.update(data)
            done = deflater.finish()
            info = zipfile.ZipInfo(f"bag/data/{i}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.CRC, info.file_size, info.compress_size = done.crc, done.size, done.compressed_size
            info.FileHeader(zip64=False)
            f"{done.sha256}  data/{i}/{name}\n".encode()
            done.close()


def measure_speed(
    *,
    timer: Callable[[], float] = time.perf_counter,
    level: int = 6,
    repeats: int = CALIBRATION_REPEATS,
    members: int = CALIBRATION_MEMBERS,
) -> Speed:
    """Time this machine's per-byte and per-member work now (the fastest of ``repeats`` each).

    ``timer`` is read before and after each repeat (a test's clock gives the figures it wants).
    About 17 ms of one core here (25 ms the first time, which makes the buffer; 2-core AMD EPYC, 2026;
    ``python -m bench.estimate ratios`` prints it), up to 50 ms when other work shares the machine.
    """
    started = time.perf_counter()
    sample = _sample_text()
    byte_times, member_times = [], []
    for _ in range(max(repeats, 1)):
        t0 = timer()
        _byte_work(sample, level)
        t1 = timer()
        _member_work(members, level)
        t2 = timer()
        byte_times.append(t1 - t0)
        member_times.append(t2 - t1)
    return Speed(
        member_seconds=min(member_times) / max(members, 1),
        byte_seconds=min(byte_times) / len(sample),
        seconds=time.perf_counter() - started,
    )


def _scaled(measured: float, ratio: float, fixed: float, clamp: float) -> float:
    if math.isnan(measured) or measured < 0:
        return fixed
    return _clamp(measured * ratio, fixed / clamp, fixed * clamp)


def calibrated_costs(
    speed: Speed,
    *,
    member_ratio: float = MEMBER_RATIO,
    byte_ratio: float = BYTE_RATIO,
    fixed: Costs = PRIOR_COSTS,
    clamp: float = CALIBRATION_CLAMP,
) -> Costs:
    """The prior for this machine: each measured time times its ratio, within 1/``clamp`` .. ``clamp`` of ``fixed``.

    A timing that is not a number, or negative, leaves that cost at ``fixed``'s; 0 or infinity
    give the clamp's ends.
    """
    return Costs(
        seconds_per_member=_scaled(speed.member_seconds, member_ratio, fixed.seconds_per_member, clamp),
        seconds_per_byte=_scaled(speed.byte_seconds, byte_ratio, fixed.seconds_per_byte, clamp),
    )


def calibrate(
    *, timer: Callable[[], float] = time.perf_counter, level: int = 6, fixed: Costs = PRIOR_COSTS
) -> tuple[Costs, Speed | None]:
    """This machine's prior and what was measured; ``(fixed, None)`` if the measurement failed (never raises)."""
    try:
        speed = measure_speed(timer=timer, level=level)
        return calibrated_costs(speed, fixed=fixed), speed
    except Exception:  # a calibration must never fail a job: the fixed prior serves
        log.warning("the estimate's calibration failed; using the fixed prior", exc_info=True)
        return fixed, None


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the platform tells, else the CPU count)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return max(os.cpu_count() or 1, 1)


@dataclass(frozen=True)
class Workload:
    """What is known of a job when Accepted is sent.

    Attributes:
        members: the member count (the listing's total, or what was counted).
        text_bytes: the texts' total size if the listing gives sizes, else ``None``.
        latency_seconds: one API response's round trip, measured on the listing.
        concurrency: texts fetched at once (``W``).
        listing_seconds_left: time still to spend reading the rest of the listing.
        cores: cores the build may use (:func:`usable_cores`); the per-byte work spreads over
            ``min(concurrency, cores)`` of them.
    """

    members: int
    text_bytes: int | None = None
    latency_seconds: float = 0.0
    concurrency: int = 1
    listing_seconds_left: float = 0.0
    cores: int = 1


@dataclass(frozen=True)
class Build:
    """One finished build, as measured: what the estimator learns from.

    Attributes:
        members: members packaged.
        text_bytes: payload bytes written.
        seconds: wall time of the build (first fetch to stored archive).
        latency_seconds: the API latency measured on that job's listing.
        concurrency: texts fetched at once.
        cores: cores the build could use.
    """

    members: int
    text_bytes: int
    seconds: float
    latency_seconds: float = 0.0
    concurrency: int = 1
    cores: int = 1


def _clamp(value: float, low: float, high: float) -> float:
    if not value >= low:  # NaN included
        return low
    return min(value, high)


def _width(concurrency: int) -> int:
    return max(1, min(concurrency, 10_000))


def _wait_seconds(members: float, latency: float, width: int) -> float:
    return members * latency / width


def _parallel(width: int, cores: int) -> int:
    """Cores the per-byte work is spread over: no more than the threads, nor than the cores."""
    return max(1, min(width, cores, 4096))


def estimate_seconds(
    work: Workload,
    costs: Costs,
    *,
    fixed_seconds: float = FIXED_SECONDS,
    bytes_per_member: float = PRIOR_BYTES_PER_MEMBER,
) -> float:
    """Seconds from Accepted to Complete for ``work`` (rounded to 0.1 s, at least 0.1, finite).

    Non-decreasing in ``members``, ``text_bytes``, ``latency_seconds`` and the costs.
    """
    members = float(min(max(work.members, 0), MAX_MEMBERS))
    if work.text_bytes is None:
        text = members * _clamp(bytes_per_member, 0.0, MAX_BYTES)
    else:
        text = float(min(max(work.text_bytes, 0), MAX_BYTES))
    width = _width(work.concurrency)
    wait = _wait_seconds(members, _clamp(work.latency_seconds, 0.0, MAX_LATENCY_SECONDS), width)
    per_byte = _clamp(costs.seconds_per_byte, 0.0, 1.0) / _parallel(width, work.cores)
    cpu = members * _clamp(costs.seconds_per_member, 0.0, 60.0) + text * per_byte
    total = (
        _clamp(fixed_seconds, 0.0, 3600.0)
        + _clamp(work.listing_seconds_left, 0.0, MAX_ESTIMATE_SECONDS)
        + max(wait, cpu)
        + min(wait, cpu) / width
    )
    return round(_clamp(total, 0.1, MAX_ESTIMATE_SECONDS), 1)


def cpu_seconds_of(build: Build, *, fixed_seconds: float = FIXED_SECONDS) -> float:
    """The CPU part of a finished build, wall seconds: the model of ``estimate_seconds`` solved for ``cpu`` (>= 0)."""
    width = _width(build.concurrency)
    spent = max(build.seconds - fixed_seconds, 0.0)
    wait = _wait_seconds(float(max(build.members, 0)), _clamp(build.latency_seconds, 0.0, MAX_LATENCY_SECONDS), width)
    cpu = spent - wait / width  # if the CPU was the larger part
    if cpu >= wait:
        return cpu
    return max((spent - wait) * width, 0.0)  # the waiting was


def fit_costs(
    builds: Iterable[Build],
    prior: Costs = PRIOR_COSTS,
    *,
    prior_weight: float = 0.5,
    fixed_seconds: float = FIXED_SECONDS,
) -> Costs:
    """The costs that best explain ``builds``' CPU parts: each cost moved from the prior by the builds it shaped.

    Each build whose CPU part is at least :data:`MIN_CPU_SHARE` of its time is compared with
    the prior's prediction for it; the ratio moves each
    cost in proportion to that cost's share of the prediction (a build of large texts says much
    about the cost per byte and little about the cost per member), plus a quarter of the other's
    share (a loaded machine is slower at everything). The moves are averaged in log space with
    the prior counted as ``prior_weight`` of a build, and clamped to 1/20 .. 20 of the prior.
    """
    weights = [prior_weight, prior_weight]
    sums = [0.0, 0.0]
    for build in builds:
        cpu = cpu_seconds_of(build, fixed_seconds=fixed_seconds)
        if build.members <= 0 or cpu <= 0 or cpu < MIN_CPU_SHARE * (build.seconds - fixed_seconds):
            # Mostly waiting: its CPU part is what is left after the latency's share, i.e. the
            # noise of one latency measurement times the member count. It teaches nothing.
            continue
        per_members = float(min(build.members, MAX_MEMBERS)) * prior.seconds_per_member
        parallel = _parallel(_width(build.concurrency), build.cores)
        per_bytes = float(min(max(build.text_bytes, 0), MAX_BYTES)) * prior.seconds_per_byte / parallel
        share = per_members / (per_members + per_bytes)
        ratio = math.log(cpu / (per_members + per_bytes))
        for i, weight in enumerate((share + (1 - share) / 4, (1 - share) + share / 4)):
            weights[i] += weight
            sums[i] += weight * ratio
    factors = [_clamp(math.exp(total / weight), 1 / 20, 20.0) for total, weight in zip(sums, weights, strict=True)]
    return Costs(
        seconds_per_member=prior.seconds_per_member * factors[0], seconds_per_byte=prior.seconds_per_byte * factors[1]
    )


class Estimator:
    """The packager's estimate, learning this machine's costs from its recent builds (kept in the process).

    Args:
        prior: the costs before any build (and what a fit is held towards); given, it is used as
            it is. By default :data:`PRIOR_COSTS`, calibrated to this machine (``calibrate``).
        fixed_seconds: a build's cost whatever its size (sweep, bag's tag files, store).
        keep: how many recent builds are remembered.
        prior_weight: how strongly the fit holds to the prior (1: as much as one build).
        calibrate: scale :data:`PRIOR_COSTS` to this machine (:func:`calibrate`) once, when the
            prior is first needed (the first estimate), not at construction. ``False``: the fixed prior.
        timer: the calibration's clock (tests).
    """

    def __init__(
        self,
        *,
        prior: Costs | None = None,
        fixed_seconds: float = FIXED_SECONDS,
        keep: int = 8,
        prior_weight: float = 0.5,
        calibrate: bool = True,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._prior = prior if prior is not None else PRIOR_COSTS
        self._pending = prior is None and calibrate
        self._timer = timer
        self._lock = threading.Lock()
        self.speed: Speed | None = None
        """What the calibration measured (``None`` before it ran, when it failed, or without one)."""
        self.fixed_seconds = fixed_seconds
        self._prior_weight = prior_weight
        self._builds: deque[Build] = deque(maxlen=max(keep, 1))
        self._costs = self._prior

    def _calibrated(self) -> None:
        if not self._pending:
            return
        with self._lock:
            if not self._pending:
                return
            prior, self.speed = calibrate(timer=self._timer, fixed=self._prior)
            if self.speed is not None:
                log.info(
                    "estimate calibrated to this machine in %.0f ms: %.0f µs per member, %.1f ns per byte "
                    "(fixed prior %.0f µs, %.1f ns)",
                    self.speed.seconds * 1000,
                    prior.seconds_per_member * 1e6,
                    prior.seconds_per_byte * 1e9,
                    self._prior.seconds_per_member * 1e6,
                    self._prior.seconds_per_byte * 1e9,
                )
            self._prior = prior
            if not self._builds:
                self._costs = prior
            else:
                self._refit()
            self._pending = False

    def calibrate_now(self) -> Costs:
        """Calibrate now if it is due (the reference packager does at start, so its first job does not wait);
        the prior."""
        return self.prior

    @property
    def prior(self) -> Costs:
        """The costs before any build (calibrated first if it is due)."""
        self._calibrated()
        return self._prior

    @property
    def costs(self) -> Costs:
        """The costs the next estimate uses."""
        self._calibrated()
        return self._costs

    @property
    def bytes_per_member(self) -> float:
        """Mean text size of the recent builds (the prior before any): for listings that give no sizes."""
        members = sum(b.members for b in self._builds)
        if members <= 0:
            return float(PRIOR_BYTES_PER_MEMBER)
        return sum(min(max(b.text_bytes, 0), MAX_BYTES) for b in self._builds) / members

    def estimate(self, work: Workload | int) -> float:
        """Seconds from Accepted to Complete (a bare ``int`` is a member count, nothing else known)."""
        if isinstance(work, int):
            work = Workload(members=work)
        return estimate_seconds(
            work, self.costs, fixed_seconds=self.fixed_seconds, bytes_per_member=self.bytes_per_member
        )

    def learn(self, build: Build) -> None:
        """Remember a finished build and refit the costs."""
        if not (build.seconds >= 0 and math.isfinite(build.seconds)):
            return
        self._calibrated()
        self._builds.append(build)
        self._refit()

    def _refit(self) -> None:
        self._costs = fit_costs(
            self._builds, self._prior, prior_weight=self._prior_weight, fixed_seconds=self.fixed_seconds
        )
