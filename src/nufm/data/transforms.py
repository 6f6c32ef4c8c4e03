"""Event transforms (``Event -> Event``) and the preprocessing contract :class:`Preprocess`.

Preprocessing follows PoLAr-MAE (arXiv:2502.02558; docs/references.md): energy threshold
0.13 MeV, optional removal of low-energy scatters, coordinates centred on 384 and divided by
768*sqrt(3)/2 (the cube fits in the unit ball), energies log-scaled to [-1, 1] with
``2*(log10(x+eps)-log10(eps))/(log10(eps+emax)-log10(eps))-1`` (eps 0.01, emax 20 MeV).

Every transform is a small frozen dataclass with the same call signature
``__call__(event, rng) -> Event``; random ones draw only from the given ``np.random.Generator``,
so a fixed seed gives a fixed result. All per-point arrays are indexed or changed together
(labels stay aligned). Geometric transforms also move the event's truth positions
(``vertices``, ``particles.start``) and rotate/flip ``particles.momentum``, so truth stays
in the same frame as ``coord``. Transforms that remove points count them in ``event.meta``
(``n_removed_threshold``, ``n_removed_low_energy``) and never remove silently.

Empty events: :class:`EnergyThreshold` and :class:`RemoveLowEnergy` raise
:class:`~nufm.data.pilarnet.DataError` (naming the event) when no point is left; the data set
removes such events beforehand (``min_points`` is at least 1), so this only fires on misuse.

Owns: the transform classes, :class:`Compose`, :class:`Preprocess`, :func:`log_energy`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Literal, Protocol

import numpy as np

from nufm.data.event import Event
from nufm.data.lartpc import CENTER, ENERGY_THRESHOLD_MEV, LOW_ENERGY, NORM_SCALE
from nufm.data.pilarnet import DataError


class Transform(Protocol):
    """Anything with ``__call__(event, rng) -> Event`` (a class or a plain function); a random
    one must draw all its randomness from the generator it is given."""

    def __call__(self, event: Event, rng: np.random.Generator, /) -> Event: ...


def _with_meta(event: Event, **updates: object) -> dict:
    meta = dict(event.meta)  # copy: events share nothing after a transform
    meta.update(updates)
    return meta


def _move(
    event: Event, positions: Callable[[np.ndarray], np.ndarray], linear: np.ndarray | None = None
) -> Event:
    """Apply ``positions`` to coord, vertices and particle starts, ``linear`` (3, 3) to momenta."""
    updates: dict[str, object] = {"coord": positions(event.coord).astype(np.float32)}
    if event.vertices is not None:
        updates["vertices"] = positions(event.vertices).astype(np.float32)
    if event.particles is not None:
        parts = replace(event.particles, start=positions(event.particles.start).astype(np.float32))
        if linear is not None:
            parts = replace(parts, momentum=(parts.momentum @ linear.T).astype(np.float32))
        updates["particles"] = parts
    return event.with_fields(**updates)


# ----------------------------------------------------------------------------------------------
# preprocessing
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class EnergyThreshold:
    """Keep points with energy > ``threshold`` MeV; count the removed ones in
    ``meta['n_removed_threshold']``. Raises DataError if no point is left."""

    threshold: float = ENERGY_THRESHOLD_MEV
    """MeV."""

    def __call__(self, event: Event, rng: np.random.Generator) -> Event:
        is_kept = event.energy > self.threshold  # (N,)
        n_kept = int(is_kept.sum())
        if n_kept == 0:
            raise DataError(
                f"{event.where}: no point above the energy threshold "
                f"{self.threshold} MeV ({len(event)} points); filter such events "
                f"with min_points >= 1"
            )
        out = event.select(is_kept)
        return out.with_fields(meta=_with_meta(event, n_removed_threshold=len(event) - n_kept))


@dataclass(frozen=True, kw_only=True)
class RemoveLowEnergy:
    """Drop low-energy-scatter points (segment 4), as PoLAr-MAE's ``remove_low_energy_scatters``
    (which drops cluster 0 of the file, the same points). Counted in
    ``meta['n_removed_low_energy']``; needs ``segment``."""

    def __call__(self, event: Event, rng: np.random.Generator) -> Event:
        if event.segment is None:
            raise DataError(f"{event.where}: RemoveLowEnergy needs segment labels")
        is_kept = event.segment != LOW_ENERGY
        n_kept = int(is_kept.sum())
        if n_kept == 0:
            raise DataError(
                f"{event.where}: only low-energy scatter points "
                f"({len(event)}); nothing left after RemoveLowEnergy"
            )
        return event.select(is_kept).with_fields(
            meta=_with_meta(event, n_removed_low_energy=len(event) - n_kept)
        )


@dataclass(frozen=True, kw_only=True)
class NormalizeCoord:
    """``coord = (coord - center) / scale`` (also vertices and particle starts)."""

    center: float = CENTER
    """Voxel units; the cube centre 384."""
    scale: float = NORM_SCALE
    """Voxel units; 768*sqrt(3)/2 = 665.1 maps the cube into the unit ball."""

    def __call__(self, event: Event, rng: np.random.Generator) -> Event:
        return _move(event, lambda x: (np.asarray(x, np.float64) - self.center) / self.scale)


def log_energy(energy: np.ndarray, eps: float = 0.01, emax: float = 20.0) -> np.ndarray:
    """PoLAr-MAE log scaling: eps -> -1 ... emax -> +1 (approximately; exactly
    ``2*(log10(x+eps)-log10(eps))/(log10(eps+emax)-log10(eps))-1``; 0 MeV maps to -1).

    Args:
        energy: (N,) MeV, >= 0.
        eps: MeV, offset inside the log.
        emax: MeV mapped to +1.

    Returns:
        (N,) float32.
    """
    y0 = math.log10(eps)
    y1 = math.log10(eps + emax)
    x = np.asarray(energy, np.float64)
    return (2.0 * (np.log10(x + eps) - y0) / (y1 - y0) - 1.0).astype(np.float32)


@dataclass(frozen=True, kw_only=True)
class LogEnergy:
    """``energy = log_energy(energy, eps, emax)`` (see :func:`log_energy`)."""

    eps: float = 0.01
    """MeV; PoLAr-MAE's ``emin`` (its code overrides it with the threshold 0.13 when
    thresholding: set ``eps=0.13`` to reproduce released checkpoints)."""
    emax: float = 20.0
    """MeV mapped to +1."""

    def __call__(self, event: Event, rng: np.random.Generator) -> Event:
        if (event.energy < 0).any():
            raise DataError(
                f"{event.where}: negative energies cannot be log-scaled "
                f"(min {event.energy.min():.3g} MeV)"
            )
        return event.with_fields(energy=log_energy(event.energy, self.eps, self.emax))


@dataclass(frozen=True, kw_only=True)
class MakeFeatures:
    """``feat = [coord, energy]`` (N, 4) float32: normalised xyz and log energy when run last;
    with ``time_scale > 0`` a fifth channel ``(time - median hit time) / time_scale``."""

    time_scale: float = 0.0
    """ns per unit of the time channel; 0: no time channel."""

    def __call__(self, event: Event, rng: np.random.Generator) -> Event:
        cols = [event.coord, event.energy[:, None]]
        if self.time_scale > 0:
            if event.time is None:
                raise ValueError(
                    f"{event.where}: the preprocessing adds a time channel "
                    f"(time_scale={self.time_scale} ns) but the event has no hit times"
                )
            t = event.time.astype(np.float64)
            t0 = float(np.median(t)) if len(t) else 0.0
            cols.append(((t - t0) / self.time_scale)[:, None])
        feat = np.concatenate(cols, axis=1)  # (N, 4 or 5)
        return event.with_fields(feat=feat.astype(np.float32))


# ----------------------------------------------------------------------------------------------
# augmentation
# ----------------------------------------------------------------------------------------------


def random_rotation_matrix(rng: np.random.Generator) -> np.ndarray:
    """(3, 3) float64 rotation, uniform on SO(3) (normalised Gaussian quaternion)."""
    w, x, y, z = rng.normal(size=4)
    n = math.sqrt(w * w + x * x + y * y + z * z)
    w, x, y, z = w / n, x / n, y / n, z / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


@dataclass(frozen=True, kw_only=True)
class RandomRotation:
    """Rotate the event by a uniform random rotation about ``center`` (one per event): any
    rotation (a LArTPC), or one about the z axis (a detector symmetric only about its axis:
    a water Cherenkov cylinder, a collider TPC around the beam)."""

    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Pivot, in the units of ``coord`` (the origin after NormalizeCoord)."""
    axis: Literal["any", "z"] = "any"
    """``any``: uniform on SO(3); ``z``: uniform angle about the z axis through ``center``."""

    def __call__(self, event: Event, rng: np.random.Generator) -> Event:
        if self.axis == "z":
            a = rng.uniform(0.0, 2.0 * math.pi)
            c, s = math.cos(a), math.sin(a)
            rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])  # (3, 3)
        else:
            rot = random_rotation_matrix(rng)  # (3, 3)
        c = np.asarray(self.center)
        return _move(event, lambda x: (np.asarray(x, np.float64) - c) @ rot.T + c, rot)


@dataclass(frozen=True, kw_only=True)
class RandomFlip:
    """Mirror each axis independently with probability ``p`` about ``center``."""

    p: float = 0.5
    """Per-axis flip probability."""
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Mirror point, in the units of ``coord``."""

    def __call__(self, event: Event, rng: np.random.Generator) -> Event:
        sign = np.where(rng.random(3) < self.p, -1.0, 1.0)  # (3,)
        c = np.asarray(self.center)
        return _move(event, lambda x: (np.asarray(x, np.float64) - c) * sign + c, np.diag(sign))


@dataclass(frozen=True, kw_only=True)
class RandomScale:
    """Scale positions about ``center`` by a factor drawn uniformly from [low, high]."""

    low: float = 0.9
    """Smallest factor."""
    high: float = 1.1
    """Largest factor."""
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Fixed point, in the units of ``coord``."""

    def __call__(self, event: Event, rng: np.random.Generator) -> Event:
        s = rng.uniform(self.low, self.high)
        c = np.asarray(self.center)
        return _move(event, lambda x: (np.asarray(x, np.float64) - c) * s + c)


@dataclass(frozen=True, kw_only=True)
class Jitter:
    """Add clipped Gaussian noise to each point's coord (truth positions unchanged)."""

    sigma: float = 0.001
    """Noise std, units of ``coord`` (0.001 normalised ~ 0.7 voxel)."""
    clip: float = 0.005
    """Noise is clipped to [-clip, clip]."""

    def __call__(self, event: Event, rng: np.random.Generator) -> Event:
        noise = np.clip(rng.normal(0.0, self.sigma, event.coord.shape), -self.clip, self.clip)
        return event.with_fields(coord=(event.coord + noise).astype(np.float32))


@dataclass(frozen=True, kw_only=True)
class EnergySmear:
    """Multiply each energy by ``max(0, 1 + sigma * N(0, 1))``; apply to MeV, before LogEnergy."""

    sigma: float = 0.05
    """Relative smearing."""

    def __call__(self, event: Event, rng: np.random.Generator) -> Event:
        factor = np.maximum(0.0, 1.0 + self.sigma * rng.normal(size=len(event)))
        return event.with_fields(energy=(event.energy * factor).astype(np.float32))


@dataclass(frozen=True, kw_only=True)
class RandomCrop:
    """Keep the ``k = ceil(f * N)`` points nearest to a random point of the event, with ``f``
    uniform in [min_fraction, max_fraction]; kept points stay in their original order."""

    min_fraction: float = 0.5
    """Smallest kept fraction, in (0, 1]."""
    max_fraction: float = 1.0
    """Largest kept fraction, in (0, 1]."""

    def __call__(self, event: Event, rng: np.random.Generator) -> Event:
        n = len(event)
        frac = rng.uniform(self.min_fraction, self.max_fraction)
        k = min(n, max(1, math.ceil(frac * n)))
        centre = event.coord[int(rng.integers(n))]
        dist = ((event.coord - centre) ** 2).sum(1)  # (N,)
        keep = np.sort(np.argpartition(dist, k - 1)[:k]) if k < n else np.arange(n)
        return event.select(keep)


@dataclass(frozen=True)
class Compose:
    """Apply transforms in order, sharing one generator."""

    transforms: tuple[Transform, ...]

    def __init__(self, transforms: Sequence[Transform]) -> None:
        object.__setattr__(self, "transforms", tuple(transforms))

    def __call__(self, event: Event, rng: np.random.Generator) -> Event:
        for t in self.transforms:
            event = t(event, rng)
        return event


# ----------------------------------------------------------------------------------------------
# the preprocessing contract
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Preprocess:
    """How raw events become model input; saved with every checkpoint (``to_dict``).

    ``transforms()`` builds: EnergyThreshold -> [RemoveLowEnergy] -> NormalizeCoord ->
    [augmentations] -> LogEnergy -> MakeFeatures. ``min_points`` and ``energy_threshold`` are
    also what :class:`nufm.data.dataset.PILArNetDataset` must be built with.
    """

    energy_threshold: float = ENERGY_THRESHOLD_MEV
    """MeV; points at or below are dropped (0 disables)."""
    remove_low_energy: bool = False
    """True = drop low-energy scatter points (segment 4), leaving 4 semantic classes."""
    min_points: int = 0
    """Events with fewer points (after the threshold) are removed by the data set."""
    center: float = CENTER
    """Voxel units subtracted from coord."""
    scale: float = NORM_SCALE
    """Voxel units dividing coord after centring."""
    log_energy_eps: float = 0.01
    """MeV, eps of the log energy scaling (PoLAr-MAE emin)."""
    log_energy_max: float = 20.0
    """MeV mapped to +1 by the log energy scaling."""
    time_scale: float = 0.0
    """ns; > 0 adds the hit time, relative to the event's median hit time and divided by
    this, as a fifth feature channel (water Cherenkov); 0: no time channel."""

    def __post_init__(self) -> None:
        if self.energy_threshold < 0:
            raise ValueError(
                f"Preprocess.energy_threshold must be >= 0, got {self.energy_threshold}"
            )
        if self.min_points < 0:
            raise ValueError(f"Preprocess.min_points must be >= 0, got {self.min_points}")
        if self.scale <= 0:
            raise ValueError(f"Preprocess.scale must be > 0, got {self.scale}")
        if self.time_scale < 0:
            raise ValueError(f"Preprocess.time_scale must be >= 0, got {self.time_scale}")
        if not 0 < self.log_energy_eps < self.log_energy_max:
            raise ValueError(
                f"Preprocess needs 0 < log_energy_eps < log_energy_max, got "
                f"{self.log_energy_eps}, {self.log_energy_max}"
            )

    def transforms(self, augment: Sequence[Transform] = ()) -> Compose:
        """The transform list; ``augment`` runs on normalised coordinates and MeV energies."""
        steps: list[Transform] = []
        if self.energy_threshold > 0:
            steps.append(EnergyThreshold(threshold=self.energy_threshold))
        if self.remove_low_energy:
            steps.append(RemoveLowEnergy())
        steps.append(NormalizeCoord(center=self.center, scale=self.scale))
        steps.extend(augment)
        steps.append(LogEnergy(eps=self.log_energy_eps, emax=self.log_energy_max))
        steps.append(MakeFeatures(time_scale=self.time_scale))
        return Compose(steps)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of the ``feat`` channels the transforms make."""
        return ("x", "y", "z", "log_energy") + (("time",) if self.time_scale > 0 else ())

    def to_dict(self) -> dict[str, float | int | bool]:
        """Plain dict for checkpoints and config files."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Preprocess:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Preprocess.from_dict: unknown keys {unknown}; known {sorted(known)}")
        return cls(**data)
