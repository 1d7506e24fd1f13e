"""Delta features and maximum-likelihood parameter generation (MLPG; Toda, Black & Tokuda 2007).

A mapping that predicts, for every frame, a Gaussian over the static coefficients and their deltas (the slope
over the neighbouring frames) is turned into one trajectory: the static sequence c that maximises the likelihood
of [c; W c], with W the delta window. Per coefficient this is the banded linear system
(P_s + W' P_d W) c = m_s + W' m_d, where P are the per-frame precisions and m = P * mean.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Float64Array = npt.NDArray[np.float64]


def deltas(x: Float64Array) -> Float64Array:
    """(T, D) slopes 0.5 (x[t+1] - x[t-1]), with the first and last frame repeated past the ends."""
    if len(x) == 0:
        return np.zeros_like(x)
    padded = np.concatenate([x[:1], x, x[-1:]])
    out: Float64Array = 0.5 * (padded[2:] - padded[:-2])
    return out


def with_deltas(x: Float64Array) -> Float64Array:
    """(T, 2D): each frame's coefficients, then their deltas."""
    return np.hstack([x, deltas(x)])


def generate(static_mean: Float64Array, static_precision: Float64Array, delta_mean: Float64Array,
             delta_precision: Float64Array) -> Float64Array:
    """(T, D) the most likely static trajectory given per-frame means and (diagonal) precisions of statics and deltas."""
    t, d = static_mean.shape
    if t < 3:
        return static_mean.copy()
    prev, nxt = np.maximum(np.arange(t) - 1, 0), np.minimum(np.arange(t) + 1, t - 1)
    out = np.empty((t, d))
    for k in range(d):
        ab = _banded_normal_matrix(static_precision[:, k], delta_precision[:, k], prev, nxt)
        pm_d = delta_precision[:, k] * delta_mean[:, k]
        rhs = static_precision[:, k] * static_mean[:, k]
        np.add.at(rhs, nxt, 0.5 * pm_d)  # W' (P_d m_d): row t of W is -0.5 at prev[t], +0.5 at nxt[t]
        np.add.at(rhs, prev, -0.5 * pm_d)
        out[:, k] = _solve_banded_symmetric(ab, rhs)
    return out


def _banded_normal_matrix(ps: Float64Array, pd: Float64Array, prev: npt.NDArray[np.int64],
                          nxt: npt.NDArray[np.int64]) -> Float64Array:
    """P_s + W' P_d W in symmetric upper banded form (3 rows: offsets 2, 1, 0)."""
    upper = np.zeros((3, len(ps)))
    upper[2] = ps
    np.add.at(upper[2], prev, 0.25 * pd)  # row t of W: -0.5 at prev[t], +0.5 at nxt[t] (prev < nxt)
    np.add.at(upper[2], nxt, 0.25 * pd)
    np.add.at(upper, (2 - (nxt - prev), nxt), -0.25 * pd)
    return upper


def _solve_banded_symmetric(ab: Float64Array, rhs: Float64Array) -> Float64Array:
    from scipy.linalg import solveh_banded  # type: ignore[import-untyped]  # scipy: a declared dependency

    out: Float64Array = np.asarray(solveh_banded(ab, rhs, lower=False, check_finite=False), dtype=np.float64)
    return out
