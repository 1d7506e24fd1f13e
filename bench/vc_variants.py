"""Spectral mappings for voice conversion compared on the same held-out clips (``voicebot voice train``'s measures).

Run: PYTHONPATH=$PWD nice -n 5 .venv/bin/python bench/vc_variants.py --cache DIR [--agents librivox,cards,allison]
     [--variants gmm,mlpg,...] [--seed N]

For each agent of bench/vc_agents.py the pack is built under DIR and its clips (the agent's takes, the stock
voice's, WORLD features) are analysed once and kept in DIR/<agent>/clips.pkl, so every variant is measured on the
same stock takes (Piper's takes vary run to run). Each variant is fitted on the training prompts only and
measured on the held-out ones with ``voice train``'s judges: pooled similarity to the enrollment (16 kHz),
Whisper base word errors through the telephone channel (8 kHz µ-law), median F0, HNR, MCD to the agent's takes.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.vc_agents import AGENTS, available, build  # noqa: E402
from voicebot.tts.pack import VoicePack, load_pack, trim_silence  # noqa: E402
from voicebot.tts.render import PromptCache  # noqa: E402
from voicebot.tts.vc import world  # noqa: E402
from voicebot.tts.vc.mapping import VoiceConversion, scale_to_gv  # noqa: E402
from voicebot.tts.vc.measure import VoiceStats  # noqa: E402
from voicebot.tts.vc.train import Clip, Judges, TrainOptions, fit, load_clip  # noqa: E402
from voicebot.tts.vc.world import RATE, Features  # noqa: E402

HEADER = "| agent | voice | similarity | phone | WER 8 kHz | MCD dB | F0 Hz | HNR dB | fit |\n" + "|---" * 9 + "|"
Converter = Callable[[Features], Features]
Variant = Callable[[Sequence[Clip], Sequence[Features], int], Converter]


def cached_clips(agent: str, cache: Path) -> tuple[VoicePack, list[Clip], list[Clip]]:
    """(pack, training clips, held-out clips), analysed once per cache folder."""
    pack_dir = cache / agent
    store = cache / f"{agent}.clips.pkl"
    if store.is_file():
        with store.open("rb") as f:
            held_ids, clips = pickle.load(f)
        return load_pack(pack_dir), *split(clips, held_ids)
    pack_dir, held_ids = build(agent, cache)
    pack = load_pack(pack_dir)
    speaker = PromptCache(pack)
    clips = [load_clip(pack, pid, lambda text: speaker.synthesize(text, RATE)) for pid in pack.prompt_ids()]
    with store.open("wb") as f:
        pickle.dump((held_ids, clips), f)
    return (pack, *split(clips, held_ids))


def split(clips: list[Clip], held_ids: Sequence[str]) -> tuple[list[Clip], list[Clip]]:
    """(training clips, held-out clips)."""
    return [c for c in clips if c.prompt_id not in held_ids], [c for c in clips if c.prompt_id in held_ids]


def model_variant(**changes: object) -> Variant:
    """``voice train``'s own fit with TrainOptions changed."""

    def make(clips: Sequence[Clip], enroll: Sequence[Features], seed: int) -> Converter:
        model: VoiceConversion = fit(clips, enroll, TrainOptions(seed=seed, **changes))  # type: ignore[arg-type]
        return model.convert_features

    return make


def blended(weight: float, **changes: object) -> Variant:
    """The source's coefficients moved only ``weight`` of the way to the mapping's (residual: the rest stays the source's)."""

    def make(clips: Sequence[Clip], enroll: Sequence[Features], seed: int) -> Converter:
        model: VoiceConversion = fit(clips, enroll, TrainOptions(seed=seed, **changes))  # type: ignore[arg-type]

        def convert(f: Features) -> Features:
            g = model.convert_features(f)
            return Features(g.f0, f.mcep + weight * (g.mcep - f.mcep), g.bap)

        return convert

    return make


def parts(keep_f0: bool, keep_spectrum: bool, **changes: object) -> Variant:
    """One half of the conversion alone: F0 only (``keep_spectrum``) or the spectral map only (``keep_f0``)."""

    def make(clips: Sequence[Clip], enroll: Sequence[Features], seed: int) -> Converter:
        model: VoiceConversion = fit(clips, enroll, TrainOptions(seed=seed, **changes))  # type: ignore[arg-type]

        def convert(f: Features) -> Features:
            g = model.convert_features(f)
            return Features(f.f0 if keep_f0 else g.f0, f.mcep if keep_spectrum else g.mcep, g.bap)

        return convert

    return make


def voiced_only(**changes: object) -> Variant:
    """The converted envelope where the source is voiced, the source's own where it is not (consonants), with a
    25 ms moving average between the two."""

    def make(clips: Sequence[Clip], enroll: Sequence[Features], seed: int) -> Converter:
        model: VoiceConversion = fit(clips, enroll, TrainOptions(seed=seed, **changes))  # type: ignore[arg-type]

        def convert(f: Features) -> Features:
            g = model.convert_features(f)
            w = np.convolve((f.f0 > 0).astype(np.float64), np.ones(5) / 5, mode="same")[:, None]
            return Features(g.f0, f.mcep + w * (g.mcep - f.mcep), g.bap)

        return convert

    return make


def without_gv(**changes: object) -> Variant:
    """``voice train``'s fit with the global-variance scaling off (plain conditional output)."""

    def make(clips: Sequence[Clip], enroll: Sequence[Features], seed: int) -> Converter:
        model: VoiceConversion = fit(clips, enroll, TrainOptions(seed=seed, **changes))  # type: ignore[arg-type]
        model.spectral.gv_weight = 0.0
        return model.convert_features

    return make


def shifted(gv: bool, **changes: object) -> Variant:
    """Residual mapping: the source's own coefficients plus the GMM's per-component mean difference
    sum_k P(k|x) (mu_y_k - mu_x_k) (every frame keeps its contrast with its neighbours); ``gv``: then scaled to
    the agent's global variance."""

    def make(clips: Sequence[Clip], enroll: Sequence[Features], seed: int) -> Converter:
        model: VoiceConversion = fit(clips, enroll, TrainOptions(seed=seed, **changes))  # type: ignore[arg-type]
        spectral, d = model.spectral, model.spectral.dims

        def convert(f: Features) -> Features:
            x = f.mcep[:, 1:1 + d]
            post = spectral.posteriors(x)
            out = x + post.T @ (spectral.means[:, d:] - spectral.means[:, :d])
            if gv:
                out = scale_to_gv(out, spectral.target_gv, 1.0)
            mcep = f.mcep.copy()
            mcep[:, 1:1 + d] = out
            return Features(model.f0.apply(f.f0), mcep, f.bap)

        return convert

    return make


def class_shift(components: int, gv: bool, dims: int = 16) -> Variant:
    """Residual mapping with classes from the source side only: a GMM of the stock voice's frames, and per class the
    posterior-weighted mean difference of the aligned agent frames; y = x + sum_k P(k|x) d_k (then GV)."""

    def make(clips: Sequence[Clip], enroll: Sequence[Features], seed: int) -> Converter:
        from sklearn.mixture import GaussianMixture

        from voicebot.tts.vc.train import parallel_frames

        base: VoiceConversion = fit(clips, enroll, TrainOptions(seed=seed, components=1))
        x, y, target_gv = parallel_frames(clips, dims)
        gmm = GaussianMixture(components, covariance_type="full", reg_covar=1e-3, max_iter=100, random_state=seed).fit(x)
        post = gmm.predict_proba(x)  # (N, K)
        shift = (post.T @ (y - x)) / np.maximum(post.sum(0), 1e-9)[:, None]

        def convert(f: Features) -> Features:
            xs = f.mcep[:, 1:1 + dims]
            out = xs + gmm.predict_proba(xs) @ shift
            if gv:
                mean, var = out.mean(0), out.var(0)
                out = (out - mean) * np.sqrt(target_gv / np.maximum(var, 1e-12)) + mean
            mcep = f.mcep.copy()
            mcep[:, 1:1 + dims] = out
            return Features(base.f0.apply(f.f0), mcep, f.bap)

        return convert

    return make


def with_aperiodicity(components: int, dims: int = 16) -> Variant:
    """``voice train``'s shift method, and the band aperiodicity shifted too: per class of the same source GMM, the
    mean difference of the aligned agent's and stock voice's coded aperiodicity."""

    def make(clips: Sequence[Clip], enroll: Sequence[Features], seed: int) -> Converter:
        from voicebot.tts.vc import align

        model: VoiceConversion = fit(clips, enroll, TrainOptions(seed=seed, method="shift", components=components, dims=dims))
        spectral = model.spectral
        xs, ds = [], []
        for c in clips:
            s_mask = world.speech_frames(c.stock, c.stock_features.frames)
            t_mask = world.speech_frames(c.own, c.own_features.frames)
            p, q = align.dtw_path(c.stock_features.mcep[s_mask, 1:1 + dims], c.own_features.mcep[t_mask, 1:1 + dims])
            xs.append(c.stock_features.mcep[s_mask, 1:1 + dims][p])
            ds.append(c.own_features.bap[t_mask][q] - c.stock_features.bap[s_mask][p])
        post = spectral.posteriors(np.vstack(xs)).T
        shift = post.T @ np.vstack(ds) / np.maximum(post.sum(0), 1e-9)[:, None]

        def convert(f: Features) -> Features:
            g = model.convert_features(f)
            bap = np.minimum(f.bap + spectral.posteriors(f.mcep[:, 1:1 + dims]).T @ shift, 0.0)
            return Features(g.f0, g.mcep, bap)

        return convert

    return make


def shift_toward_gmm(weight: float, components: int = 16) -> Variant:
    """The shift method's envelope moved ``weight`` of the way to the joint GMM's (0: shift, 1: gmm)."""

    def make(clips: Sequence[Clip], enroll: Sequence[Features], seed: int) -> Converter:
        shift: VoiceConversion = fit(clips, enroll, TrainOptions(seed=seed, method="shift", components=components))
        gmm: VoiceConversion = fit(clips, enroll, TrainOptions(seed=seed, method="gmm"))

        def convert(f: Features) -> Features:
            a, b = shift.convert_features(f), gmm.convert_features(f)
            return Features(a.f0, a.mcep + weight * (b.mcep - a.mcep), a.bap)

        return convert

    return make


def stacked(x: np.ndarray, context: int) -> np.ndarray:
    """(T, (2 context + 1) D): each frame with its ``context`` neighbours on each side (ends repeated)."""
    padded = np.concatenate([np.repeat(x[:1], context, 0), x, np.repeat(x[-1:], context, 0)])
    return np.hstack([padded[i: i + len(x)] for i in range(2 * context + 1)])


def mlp(context: int, hidden: tuple[int, ...], dims: int = 16) -> Variant:
    """A small network (scikit-learn MLPRegressor) from the source's stacked frames to the agent's frame, then GV;
    F0 as ``voice train``'s."""

    def make(clips: Sequence[Clip], enroll: Sequence[Features], seed: int) -> Converter:
        from sklearn.neural_network import MLPRegressor

        from voicebot.tts.vc import align

        base: VoiceConversion = fit(clips, enroll, TrainOptions(seed=seed, components=1))
        xs, ys, gvs = [], [], []
        for c in clips:
            s_mask = world.speech_frames(c.stock, c.stock_features.frames)
            t_mask = world.speech_frames(c.own, c.own_features.frames)
            s = stacked(c.stock_features.mcep[:, 1:1 + dims], context)[s_mask]
            t = c.own_features.mcep[t_mask, 1:1 + dims]
            p, q = align.dtw_path(s[:, context * dims:(context + 1) * dims], t)
            xs.append(s[p])
            ys.append(t[q])
            gvs.append(t.var(axis=0))
        x, y, gv = np.vstack(xs), np.vstack(ys), np.mean(gvs, axis=0)
        xm, xsd, ym, ysd = x.mean(0), x.std(0) + 1e-9, y.mean(0), y.std(0) + 1e-9
        net = MLPRegressor(hidden_layer_sizes=hidden, alpha=1e-2, max_iter=200, early_stopping=True, random_state=seed)
        net.fit((x - xm) / xsd, (y - ym) / ysd)

        def convert(f: Features) -> Features:
            out = net.predict((stacked(f.mcep[:, 1:1 + dims], context) - xm) / xsd) * ysd + ym
            mean, var = out.mean(0), out.var(0)
            out = (out - mean) * np.sqrt(gv / np.maximum(var, 1e-12)) + mean
            mcep = f.mcep.copy()
            mcep[:, 1:1 + dims] = out
            return Features(base.f0.apply(f.f0), mcep, f.bap)

        return convert

    return make


VARIANTS: dict[str, Variant] = {
    "mlpg": model_variant(method="mlpg"),
    "mlpg-speconly": parts(keep_f0=True, keep_spectrum=False, method="mlpg"),
    "gmm-voiced": voiced_only(method="gmm"),
    "mlpg-voiced": voiced_only(method="mlpg"),
    "mlp": mlp(4, (64, 64)),
    "shift": shifted(False, method="gmm"),
    "cshift16-gv": class_shift(16, True),
    "cshift64-gv": class_shift(64, True),
    "cshift64": class_shift(64, False),
    "cshift16-gv-d39": class_shift(16, True, dims=39),
    "shift16-ap": with_aperiodicity(16),
    "shift16-d39-ap": with_aperiodicity(16, dims=39),
    "shift16": model_variant(method="shift", components=16),
    "shift16-nogv": without_gv(method="shift", components=16),
    "shift16-speconly": parts(keep_f0=True, keep_spectrum=False, method="shift", components=16),
    "shift16-gmm0.5": shift_toward_gmm(0.5),
    "shift16-gmm0.7": shift_toward_gmm(0.7),
    "shift32": model_variant(method="shift", components=32),
    "shift16-d24": model_variant(method="shift", components=16, dims=24),
    "cshift16-gv-d24": class_shift(16, True, dims=24),
    "cshift32-gv-d39": class_shift(32, True, dims=39),
    "shift-gv": shifted(True, method="gmm"),
    "shift8": shifted(False, method="gmm", components=8),
    "shift8-gv": shifted(True, method="gmm", components=8),
    "resynth": lambda clips, enroll, seed: (lambda f: f),
    "gmm": model_variant(method="gmm"),
    "gmm-f0only": parts(keep_f0=False, keep_spectrum=True, method="gmm"),
    "gmm-speconly": parts(keep_f0=True, keep_spectrum=False, method="gmm"),
    "gmm-blend0.6": blended(0.6, method="gmm"),
}


def row(agent: str, name: str, stats: VoiceStats, fit_s: float) -> str:
    """One markdown table row."""
    return (f"| {agent} | {name} | {stats.similarity:.2f} | {stats.phone_similarity:.2f} | {100 * stats.wer:.1f} % "
            f"({stats.word_errors}/{stats.words}) | {stats.mcd:.2f} | {stats.f0_median:.0f} | {stats.hnr_median:.1f} | "
            f"{fit_s:.1f} s |")


def run_agent(agent: str, cache: Path, names: Sequence[str], seed: int, show: bool) -> list[str]:
    """Measure the agent's own takes, the stock voice and every variant on the held-out clips."""
    pack, train, held = cached_clips(agent, cache)
    enroll = [world.analyze(c) for c in (trim_silence(a, RATE) for a in pack.enrollment(RATE)) if len(c)]
    judges = Judges.for_pack(pack)
    texts, own = [c.text for c in held], [c.own_features for c in held]
    stock = judges.stats("stock", texts, [c.stock for c in held], [c.stock_features for c in held], own)
    rows = [row(agent, "agent's own", judges.stats("agent", texts, [c.own for c in held], own, own), 0.0),
            row(agent, "stock", stock, 0.0)]
    print("\n".join(rows), flush=True)
    for name in names:
        started = time.perf_counter()
        convert = VARIANTS[name](train, enroll, seed)
        fit_s = time.perf_counter() - started
        audio = [world.synthesize(convert(c.stock_features), level_like=c.stock) for c in held]
        stats = judges.stats(name, texts, audio, None, own)
        rows.append(row(agent, name, stats, fit_s))
        print(rows[-1], flush=True)
        if show:
            for text, clip in zip(texts, audio, strict=True):
                print(f"    {text} | {judges.transcribe(world_phone(clip))}", flush=True)
    return rows


def world_phone(samples: np.ndarray) -> np.ndarray:
    """8 kHz telephone channel of a 16 kHz clip (what Whisper hears)."""
    from voicebot.audio.telephone import telephone_channel

    return telephone_channel(samples, RATE)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True, help="packs and analysed clips are kept here")
    parser.add_argument("--agents", default=",".join(AGENTS))
    parser.add_argument("--variants", default="gmm", help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show", action="store_true", help="print what Whisper heard for each converted clip")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    names = [v.strip() for v in args.variants.split(",")]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    rows = []
    print(HEADER)
    for agent in args.agents.split(","):
        if available(agent.strip()):
            rows += run_agent(agent.strip(), args.cache, names, args.seed, args.show)
    print("\n" + HEADER)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
