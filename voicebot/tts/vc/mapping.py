"""The conversion: a joint-density GMM over aligned frame pairs, global variance, and a log-F0 transform.

Spectral envelope (coded coefficients 1..D, D = :data:`MAPPED_DIMS`; coefficient 0, the level, and those past
D, the finest detail, stay the source's): a GMM
fitted to stacked [source; target] frames gives, for a source frame x, the MMSE estimate
E[y | x] = sum_k P(k | x) (mu_y_k + S_yx_k S_xx_k^-1 (x - mu_x_k)). The estimate is over-smoothed
(muffled), so each coefficient's variance over the utterance is then scaled to the agent's
global variance (GV). F0: log F0 moved from the source's mean and deviation to the agent's.
Aperiodicity stays the source's. Fitting is deterministic given the seed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from voicebot.tts.vc.world import Features

Float64Array = npt.NDArray[np.float64]
MAPPED_DIMS = 16  # coefficients mapped (of world.DIMS - 1): 24 raised similarity but doubled Whisper's errors
COMPONENTS = 4  # GMM mixture components: 18-100 s of parallel speech leaves ~1 k frames per component
REG_COVAR = 1e-3  # added to the covariance diagonals: keeps components with few frames well conditioned
GV_WEIGHT = 1.0  # 0 = plain MMSE output, 1 = the agent's full global variance


@dataclass
class F0Transform:
    """log F0: (x - src_mean) / src_std * tgt_std + tgt_mean."""

    src_mean: float
    src_std: float
    tgt_mean: float
    tgt_std: float

    def apply(self, f0: Float64Array) -> Float64Array:
        """Converted F0 (Hz; 0 stays unvoiced)."""
        out = np.zeros_like(f0)
        voiced = f0 > 0
        z = (np.log(f0[voiced]) - self.src_mean) / max(self.src_std, 1e-6)
        out[voiced] = np.exp(z * self.tgt_std + self.tgt_mean)
        return out

    @classmethod
    def fit(cls, src_log_f0: Float64Array, tgt_log_f0: Float64Array) -> F0Transform:
        """From the voiced log F0 of all source and all target frames."""
        return cls(float(src_log_f0.mean()), float(src_log_f0.std()), float(tgt_log_f0.mean()), float(tgt_log_f0.std()))


@dataclass
class SpectralMap:
    """Joint-density GMM parameters (``dims`` source + ``dims`` target coefficients) and the target GV."""

    weights: Float64Array  # (K,)
    means: Float64Array  # (K, 2D)
    covariances: Float64Array  # (K, 2D, 2D)
    target_gv: Float64Array  # (D,) mean per-utterance variance of the agent's coefficients
    gv_weight: float = GV_WEIGHT
    _cache: dict[str, Float64Array] = field(default_factory=dict, repr=False, compare=False)

    @property
    def dims(self) -> int:
        """D: coefficients per side."""
        return int(self.means.shape[1] // 2)

    @classmethod
    def fit(cls, source: Float64Array, target: Float64Array, target_gv: Float64Array, *, seed: int = 0,
            components: int = COMPONENTS) -> SpectralMap:
        """Fit to aligned (N, D) source and target frames (full covariances, EM from k-means, seeded)."""
        from sklearn.mixture import GaussianMixture

        joint = np.hstack([source, target])
        k = max(1, min(components, len(joint) // (4 * joint.shape[1])))
        gmm = GaussianMixture(n_components=k, covariance_type="full", reg_covar=REG_COVAR, max_iter=100,
                              random_state=seed, init_params="kmeans")
        gmm.fit(joint)
        return cls(np.asarray(gmm.weights_, dtype=np.float64), np.asarray(gmm.means_, dtype=np.float64),
                   np.asarray(gmm.covariances_, dtype=np.float64), np.asarray(target_gv, dtype=np.float64))

    def _prepared(self) -> dict[str, Float64Array]:
        if not self._cache:
            d = self.dims
            sxx, syx = self.covariances[:, :d, :d], self.covariances[:, d:, :d]
            inv = np.asarray(np.linalg.inv(sxx), dtype=np.float64)
            logdet = np.asarray(np.linalg.slogdet(sxx)[1], dtype=np.float64)
            self._cache.update(inv=inv, logdet=logdet, gain=syx @ inv)
        return self._cache

    def convert(self, source: Float64Array) -> Float64Array:
        """(T, D) converted coefficients of one utterance (MMSE, then GV-scaled around their mean)."""
        d, prep = self.dims, self._prepared()
        mx, my = self.means[:, :d], self.means[:, d:]
        diff = source[None, :, :] - mx[:, None, :]  # (K, T, D)
        maha = np.einsum("ktd,kde,kte->kt", diff, prep["inv"], diff)
        logp = np.log(self.weights)[:, None] - 0.5 * (maha + prep["logdet"][:, None] + d * np.log(2 * np.pi))
        post = np.exp(logp - logp.max(axis=0, keepdims=True))
        post /= post.sum(axis=0, keepdims=True)
        cond = my[:, None, :] + np.einsum("kde,kte->ktd", prep["gain"], diff)  # (K, T, D)
        out: Float64Array = np.einsum("kt,ktd->td", post, cond)
        return self._with_gv(out)

    def _with_gv(self, y: Float64Array) -> Float64Array:
        if len(y) < 2 or self.gv_weight <= 0:
            return y
        mean, var = y.mean(axis=0), y.var(axis=0)
        scale = np.sqrt(self.target_gv / np.maximum(var, 1e-12)) ** self.gv_weight
        out: Float64Array = (y - mean) * scale + mean
        return out


@dataclass
class VoiceConversion:
    """A trained conversion: spectral map plus F0 transform, and what it was trained on."""

    spectral: SpectralMap
    f0: F0Transform
    meta: dict[str, object] = field(default_factory=dict)

    def convert_features(self, features: Features) -> Features:
        """The source utterance's parameters moved toward the agent (level and aperiodicity kept)."""
        mcep = features.mcep.copy()
        end = 1 + self.spectral.dims  # coefficients past it (the finest envelope detail) stay the source's
        mcep[:, 1:end] = self.spectral.convert(features.mcep[:, 1:end])
        return Features(self.f0.apply(features.f0), mcep, features.bap)

    def save(self, path: Path) -> None:
        """Write the model as one .npz (arrays plus a JSON header), atomically."""
        header = {"f0": vars(self.f0), "gv_weight": self.spectral.gv_weight, "meta": self.meta}
        partial = path.with_name(path.name + ".partial.npz")
        np.savez(partial, weights=self.spectral.weights, means=self.spectral.means,
                 covariances=self.spectral.covariances, target_gv=self.spectral.target_gv,
                 header=np.array(json.dumps(header)))
        partial.replace(path)

    @classmethod
    def load(cls, path: Path) -> VoiceConversion:
        """Read a model written by :meth:`save` (ValueError or OSError when it is not one)."""
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            spectral = SpectralMap(data["weights"], data["means"], data["covariances"], data["target_gv"],
                                   float(header["gv_weight"]))
        return cls(spectral, F0Transform(**header["f0"]), dict(header["meta"]))
