"""The compiled light sum of the water Cherenkov simulator against a plain numpy
implementation of the same formula (nufm.sim.water_cherenkov's docstring), on steps around the
tank with and without light (below threshold)."""

from __future__ import annotations

import math

import numpy as np

from nufm.sim.water_cherenkov import WaterCherenkovConfig, pmt_positions
from nufm.sim.wc_light import light_sum

CFG = WaterCherenkovConfig()


def _reference(pos, dirs, length, beta, pmt_pos, pmt_normal):
    """(direct, best, best_dist, mean_omega, per_step) with (S, P, 3) numpy arrays."""
    n, w = CFG.n_water, CFG.cone_width
    cos_c = np.minimum(1 / (n * beta), 1.0)
    sin2 = 1 - cos_c**2
    yield_ = 76_420.0 * sin2 * length
    theta_c = np.arccos(cos_c)
    vec = pmt_pos[None] - pos[:, None]  # (S, P, 3)
    dist = np.linalg.norm(vec, axis=-1)  # (S, P)
    u = vec / dist[..., None]
    theta = np.arccos(np.clip(np.einsum("spk,sk->sp", u, dirs), -1, 1))
    cos_inc = np.clip(-np.einsum("spk,pk->sp", u, pmt_normal), 0, 1)
    omega = math.pi * CFG.pmt_radius**2 * cos_inc / dist**2
    g = np.exp(-0.5 * ((theta - theta_c[:, None]) / w) ** 2) / (math.sqrt(2 * math.pi) * w)
    mu = (
        yield_[:, None]
        * g
        / (2 * math.pi * np.maximum(np.sin(theta), 1e-3))
        * omega
        * CFG.qe
        * np.exp(-dist / CFG.attenuation)
        * np.sqrt(cos_inc)
    )
    mu = np.where(sin2[:, None] > 0, mu, 0.0)
    best = mu.argmax(0)
    P = pmt_pos.shape[0]
    return mu.sum(0), best, dist[best, np.arange(P)], omega.mean(0), mu.sum(1)


def _steps(rng: np.random.Generator, S: int):
    r = 12 * np.sqrt(rng.uniform(size=S))
    a = rng.uniform(0, 2 * np.pi, S)
    pos = np.column_stack([r * np.cos(a), r * np.sin(a), rng.uniform(-15, 15, S)])
    dirs = rng.normal(size=(S, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    beta = rng.uniform(0.6, 1.0, S)  # some below the threshold 1 / 1.33
    return pos, dirs, rng.uniform(0.01, 0.1, S), beta


def test_light_sum_equals_the_numpy_formula() -> None:
    """Same light per PMT, the same brightest step and its distance, the same mean solid angle
    and light per step as the numpy formula (the simulator's sum before it was compiled), to
    rounding (rtol 1e-10: arccos amplifies the rounding of a cosine near 1, a PMT straight
    ahead of a step)."""
    pmts = pmt_positions(CFG)
    pos, dirs, length, beta = _steps(np.random.default_rng(0), 40)
    assert (beta < 1 / CFG.n_water).any() and (beta > 1 / CFG.n_water).any()
    got = light_sum(
        pos,
        dirs,
        length,
        beta,
        pmts.position,
        pmts.normal,
        n_water=CFG.n_water,
        pmt_radius=CFG.pmt_radius,
        cone_width=CFG.cone_width,
        qe=CFG.qe,
        attenuation=CFG.attenuation,
    )
    want = _reference(pos, dirs, length, beta, pmts.position, pmts.normal)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-10, atol=1e-300)
    lit = want[0] > 0
    assert lit.mean() > 0.3  # the test reaches many PMTs
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_allclose(got[2], want[2], rtol=1e-12)
    np.testing.assert_allclose(got[3], want[3], rtol=1e-12)
    np.testing.assert_allclose(got[4], want[4], rtol=1e-10)
