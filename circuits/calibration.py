"""What a chunk proof costs on a named machine: a stored table of measured proofs, and lines fitted to it.

`circuits/calibration.json` holds measured chunk proofs (`bench/calibrate.py` measures them and, with
`--write`, replaces the table; the file names the command that made it). Each point is one chunk circuit: its
EZKL row count and logrows, the seconds of its key setup and of its proof, its proving key's bytes and the
peak resident memory of the process that proved it, with the cores that process had. `noseprint plan` reads
the fitted lines to cost a proof before paying for it (`prover.estimate`).

The model. EZKL lays a circuit of `num_rows` rows out in column blocks of 2^logrows rows (`circuits.settings.
choose_logrows`), and halo2's prover commits to and transforms every column over the full 2^logrows domain.
So a proof's work, its proving key and its memory follow the circuit's *area*, blocks x 2^logrows with
blocks = ceil(num_rows / 2^logrows) (at least one), not its rows: a small chunk compiled at a large common
logrows pays for the whole column. Each quantity is fitted as `intercept + slope x area` (the intercept is
what does not grow with the circuit: starting, reading the SRS, the fixed lookup tables), by least squares
on relative errors (the points span orders of magnitude, and a plan needs every one within a fraction, not
the largest within seconds), with both coefficients kept non-negative so that more area never costs less.
A line rather than a power law because a plan extrapolates far beyond the measured points (a 7B model's
chunks are measured at a few and predicted at many); FFTs add a log factor that MSMs partly cancel, so
the linear model can be checked by `bench/calibrate.py --from-checkpoint` (measured against predicted).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from math import ceil
from pathlib import Path

import numpy as np
from noseprint.core.errors import UsageError

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")
FIT_TOLERANCE = 0.25
"""The fitted lines reproduce every stored point within this relative error (tests/test_plan.py checks it); a
table that does not fit this well says the linear model is wrong for that machine."""
POINT_FIELDS = ("hidden", "rows", "logrows", "setup_s", "prove_s", "pk_bytes", "peak_rss_bytes", "cores")


def area(rows: int, logrows: int) -> int:
    """The circuit's area: its column blocks x 2^logrows rows (see the module docstring)."""
    height = 1 << logrows
    return max(1, ceil(rows / height)) * height


@dataclass(frozen=True)
class Point:
    """One measured chunk proof (the optional fields say which chunk, for the curve and for people)."""

    hidden: int
    rows: int
    logrows: int
    setup_s: float
    prove_s: float
    pk_bytes: int
    peak_rss_bytes: int
    """Peak RSS of the process that proved (a worker: it loads the proving key and proves)."""
    cores: int
    chunk_weights: int | None = None
    """The `--chunk-weights` the chunk was planned with."""
    weights: int | None = None
    """Weights the chunk proves (its weight blocks, not E and the norm it shares)."""
    kind: str | None = None
    setup_peak_rss_bytes: int | None = None
    """Peak RSS of the process that ran the key setup (the prover's main process)."""

    @property
    def area(self) -> int:
        return area(self.rows, self.logrows)

    @staticmethod
    def from_dict(data: dict) -> Point:
        missing = [name for name in POINT_FIELDS if name not in data]
        if missing:
            raise ValueError(f"a calibration point lacks {', '.join(missing)}")
        known = set(Point.__dataclass_fields__)
        return Point(**{key: value for key, value in data.items() if key in known})

    def to_dict(self) -> dict:
        return {key: value for key, value in asdict(self).items() if value is not None}


@dataclass(frozen=True)
class Line:
    """y = intercept + slope x area, both non-negative."""

    intercept: float
    slope: float

    def at(self, x: float) -> float:
        return self.intercept + self.slope * x


def fit_line(x: list[float], y: list[float]) -> Line:
    """Least squares on relative errors, coefficients kept non-negative: with a negative intercept the line is
    refitted through the origin, with a negative slope it is flat at the (relative-error) mean.

    Why relative: the points span orders of magnitude of area, and absolute least squares would fit the
    largest and leave the small ones off by multiples. One point gives a line through the origin."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(xs) == 0 or np.any(ys <= 0) or np.any(xs <= 0):
        raise ValueError("a fit needs measured points with positive areas and values")
    weights = 1.0 / ys
    if len(xs) >= 2 and np.ptp(xs) > 0:
        design = np.stack([np.ones_like(xs), xs], axis=1) * weights[:, None]
        (intercept, slope), *_ = np.linalg.lstsq(design, ys * weights, rcond=None)
        if intercept >= 0 and slope >= 0:
            return Line(float(intercept), float(slope))
    # Through the origin: minimise sum(((s x - y) / y)^2), i.e. s = sum(x / y) / sum((x / y)^2).
    ratio = xs * weights
    slope = float(np.sum(ratio) / np.sum(ratio * ratio))
    if slope > 0:
        return Line(0.0, slope)
    return Line(float(len(ys) / np.sum(weights)), 0.0)


@dataclass(frozen=True)
class Calibration:
    """The measured table and the lines fitted to it; predictions take a circuit's rows and logrows."""

    machine: str
    measured: str
    command: str
    points: tuple[Point, ...]
    note: str = ""
    fits: dict[str, Line] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.points:
            raise ValueError("a calibration needs at least one measured point")
        if len({p.cores for p in self.points}) != 1:
            raise ValueError("every point of a calibration must be measured with the same cores")
        areas = [float(p.area) for p in self.points]
        for name in ("setup_s", "prove_s", "pk_bytes", "peak_rss_bytes"):
            self.fits[name] = fit_line(areas, [float(getattr(p, name)) for p in self.points])

    @property
    def cores(self) -> int:
        """Cores each measured proof had: a worker of a plan is assumed to have as many."""
        return self.points[0].cores

    @property
    def largest_area(self) -> int:
        return max(p.area for p in self.points)

    def prove_seconds(self, rows: int, logrows: int) -> float:
        """Seconds of one proof (witness and proof, proving key read from disk) on `cores` cores."""
        return self.fits["prove_s"].at(area(rows, logrows))

    def setup_seconds(self, rows: int, logrows: int) -> float:
        """Seconds of the key setup (verification and proving key) of one circuit, paid once per circuit."""
        return self.fits["setup_s"].at(area(rows, logrows))

    def pk_bytes(self, rows: int, logrows: int) -> float:
        """Bytes of the proving key on disk."""
        return self.fits["pk_bytes"].at(area(rows, logrows))

    def peak_bytes(self, rows: int, logrows: int) -> float:
        """Peak resident memory of a process proving this circuit (the memory a worker needs)."""
        return self.fits["peak_rss_bytes"].at(area(rows, logrows))

    def to_dict(self) -> dict:
        return {
            "machine": self.machine,
            "measured": self.measured,
            "command": self.command,
            "note": self.note,
            "points": [p.to_dict() for p in self.points],
        }

    @staticmethod
    def from_dict(data: dict) -> Calibration:
        return Calibration(
            machine=str(data["machine"]),
            measured=str(data["measured"]),
            command=str(data["command"]),
            points=tuple(Point.from_dict(p) for p in data["points"]),
            note=str(data.get("note", "")),
        )


def load_calibration(path: Path | None = None) -> Calibration:
    """The stored table (package data), or one measured on another machine (`bench/calibrate.py --write --out`);
    a UsageError naming the file if it is not a calibration table."""
    source = path or CALIBRATION_FILE
    try:
        return Calibration.from_dict(json.loads(Path(source).read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
        raise UsageError(f"{source} is not a calibration table: {exc}") from None
