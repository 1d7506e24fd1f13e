"""Dynamic time warping of two feature sequences (numpy; one vectorised pass per source frame)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Float64Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def distances(a: Float64Array, b: Float64Array) -> Float64Array:
    """(len(a), len(b)) Euclidean distances between the rows of ``a`` and ``b``."""
    sq = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * a @ b.T
    out: Float64Array = np.sqrt(np.maximum(sq, 0.0))
    return out


def dtw_path(a: Float64Array, b: Float64Array) -> tuple[IntArray, IntArray]:
    """Index pairs (i, j) of the cheapest monotonic path from (0, 0) to (len(a)-1, len(b)-1).

    Steps (1, 0), (0, 1) and (1, 1); the cost of a cell is counted once per visit. Each row is computed
    at once: D[i, j] = S[j] + min over k <= j of (A[k] - S[k]), with A the best entry from row i-1 and
    S the running sum of row i's costs.
    """
    cost = distances(a, b)
    n, m = cost.shape
    total = np.empty((n, m))
    total[0] = np.cumsum(cost[0])
    for i in range(1, n):
        above = total[i - 1]
        entry = np.minimum(above, np.concatenate(([np.inf], above[:-1]))) + cost[i]  # from (i-1, j) or (i-1, j-1)
        running = np.cumsum(cost[i])
        total[i] = running + np.minimum.accumulate(entry - running)
    return _backtrack(total)


def _backtrack(total: Float64Array) -> tuple[IntArray, IntArray]:
    i, j = total.shape[0] - 1, total.shape[1] - 1
    path = [(i, j)]
    while i > 0 or j > 0:
        if i == 0:
            j -= 1
        elif j == 0:
            i -= 1
        else:
            steps = ((total[i - 1, j - 1], i - 1, j - 1), (total[i - 1, j], i - 1, j), (total[i, j - 1], i, j - 1))
            _, i, j = min(steps)
        path.append((i, j))
    pairs = np.array(path[::-1], dtype=np.int64)
    return pairs[:, 0], pairs[:, 1]
