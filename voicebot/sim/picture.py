"""The timeline picture of a call: what the bot and the caller said, their audio, VAD, barge-ins, on one time axis.

Top to bottom: a legend of the marks; the bot's lane (each prompt as a bar
from its first to its last audio, with its text); the bot's and the caller's
waveforms; the caller's lane (each turn as a bar from speech onset to end,
with the final transcript); the caller's speech probability (VAD) with its own
legend. Labels are wrapped and stacked in rows so that none overlaps another
or leaves the figure; text cut to fit ends with an ellipsis. Speech the bot
ignored or declined is drawn grey/orange, hatched on the caller's waveform,
and labelled with why.

:func:`timeline_figure` builds the figure (for tests, which measure the label
boxes); :func:`save_timeline` writes it as PNG.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voicebot.timeline import Timeline

DPI = 100
WIDTH_PER_S = 0.28  # inches of figure per second of call, between MIN_WIDTH and MAX_WIDTH
MIN_WIDTH, MAX_WIDTH = 14.0, 40.0
LEFT_IN, RIGHT_IN = 0.9, 0.3  # margins (inches) around the plotting area
FONT_SIZE = 8.0
TOP_IN = 1.2  # title and the two-row legend of marks (inches)
LINE_IN = 0.16  # height of one text line (inches)
GAP_PX = 10  # least horizontal space between two labels in a row (pixels)
LABEL_PX = (200, 460)  # least and most width of a label (pixels); a label may run past its bar up to the least
BOT_LINES, CALLER_LINES = 3, 2  # most lines of text per label; more is cut with an ellipsis
BOT_COLOR, CALLER_COLOR, CUT_COLOR = "tab:green", "tab:blue", "tab:red"
FATE_COLOR = {"ignored": "dimgray", "declined": "tab:orange"}
FATE_SHORT = {"not_listening": "node does not listen", "not_interruptible": "could not interrupt",
              "declined": "no request: bot carried on", "no_words": "nothing recognised"}
CJK_FONTS = ("WenQuanYi Micro Hei", "Noto Sans CJK SC", "Noto Sans SC")


@dataclass
class Label:
    """One transcript label: a bar from ``t0`` to ``t1`` (s) and its text, placed in ``row`` at ``x`` (s)."""

    t0: float
    t1: float
    text: str
    color: str
    max_lines: int
    italic: bool = False
    lines: list[str] = field(default_factory=list)
    width_px: float = 0.0
    x: float = 0.0
    row: int = 0


def bot_labels(timeline: Timeline, end_s: float) -> list[Label]:
    """One label per prompt the caller heard: its bar runs from its first to its last audio."""
    starts = {e.get("play_id"): e["t"] for e in timeline.of("prompt_start")}
    ends = {e.get("play_id"): e for e in timeline.of("prompt_end")}
    out = []
    for play in timeline.of("play"):
        pid = play.get("play_id")
        if pid not in starts:
            continue
        end = ends.get(pid)
        cut = bool(end and end.get("interrupted"))
        text = ("✂ " if cut else "") + str(play.get("text", ""))
        out.append(Label(starts[pid], end["t"] if end else end_s, text, CUT_COLOR if cut else "darkgreen", BOT_LINES))
    return out


def caller_labels(turns: Sequence[dict[str, Any]]) -> list[Label]:
    """One label per caller turn with its final transcript; ignored and declined turns say so and why."""
    out = []
    for turn in turns:
        onset = turn["onset"] if turn.get("onset") is not None else turn["speech_end"]
        text = str(turn.get("text", "")).strip() or "(nothing recognised)"
        if turn.get("ignored"):
            fate = turn.get("barge_in") or "ignored"
            why = turn.get("ignored_short") or FATE_SHORT.get(turn.get("ignored_code", ""), "")
            label = f"{fate} ({why}): {text}" if why else f"{fate}: {text}"
            out.append(Label(onset, turn["speech_end"], label, FATE_COLOR.get(fate, "dimgray"), CALLER_LINES, italic=True))
        else:
            out.append(Label(onset, turn["speech_end"], f"“{text}”", "navy", CALLER_LINES))
    return out


def fit_text(text: str, max_px: float, max_lines: int, measure: Any) -> tuple[list[str], float]:
    """Wrap ``text`` into at most ``max_lines`` lines no wider than ``max_px``; cut with "…" when it does not fit.

    ``measure(line)`` gives a line's width in pixels. Returns the lines and the widest one's width.
    """
    text = " ".join(text.split())
    chars = max(4, int(max_px / max(1.0, measure("x" * 10) / 10)))
    while True:
        lines = textwrap.wrap(text, chars, break_long_words=True) or [""]
        if len(lines) > max_lines:
            lines = lines[:max_lines]
            lines[-1] = _ellipsis(lines[-1], chars) + ("”" if text.endswith("”") else "")
        widths = [measure(line) for line in lines]
        if max(widths) <= max_px or chars <= 4:
            return lines, max(widths)
        chars -= max(1, chars // 12)


def _ellipsis(line: str, chars: int) -> str:
    """``line`` ending in "…", within ``chars`` characters."""
    return line[: max(1, chars - 1)].rstrip(" ,.;:") + "…"


def place(labels: list[Label], px_per_s: float, width_px: float, x0: float, measure: Any) -> int:
    """Wrap each label and put it in the first row where it overlaps nothing; return the number of rows.

    A label starts at its bar's start, shifted left if it would run past the right edge (``width_px``).
    """
    row_ends: list[float] = []
    for label in sorted(labels, key=lambda lb: lb.t0):
        budget = min(LABEL_PX[1], max(LABEL_PX[0], (label.t1 - label.t0) * px_per_s))
        label.lines, label.width_px = fit_text(label.text, min(budget, width_px), label.max_lines, measure)
        left = min(max(0.0, (label.t0 - x0) * px_per_s), max(0.0, width_px - label.width_px))
        right = max(left + label.width_px, (label.t1 - x0) * px_per_s)
        row = next((r for r, end in enumerate(row_ends) if end + GAP_PX <= left), len(row_ends))
        if row == len(row_ends):
            row_ends.append(right)
        row_ends[row] = right
        label.row, label.x = row, x0 + left / px_per_s
    return max(1, len(row_ends))


def timeline_figure(timeline: Timeline, caller: np.ndarray, bot: np.ndarray, rate: int, duration_s: float, *,
                    turns: Sequence[dict[str, Any]] | None = None, title: str = "") -> tuple[Any, list[Any]]:
    """The picture of a call; returns the matplotlib figure and its transcript label texts.

    ``turns`` defaults to ``timeline.turns()`` (pass refined ones to give better reasons); ``rate`` in Hz.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    end_s = max(duration_s, len(caller) / rate, len(bot) / rate, 1.0)
    width = min(MAX_WIDTH, max(MIN_WIDTH, end_s * WIDTH_PER_S))
    with plt.rc_context({"font.family": _font_families(), "font.size": FONT_SIZE}):
        fig = plt.figure(figsize=(width, 8), dpi=DPI)
        renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
        probe = fig.text(0, 0, "", fontsize=FONT_SIZE)

        def measure(line: str) -> float:
            probe.set_text(line)
            return float(probe.get_window_extent(renderer).width)

        plot_px = (width - LEFT_IN - RIGHT_IN) * DPI
        bots = bot_labels(timeline, end_s)
        callers = caller_labels(turns if turns is not None else timeline.turns())
        bot_rows = place(bots, plot_px / end_s, plot_px, 0.0, measure)
        caller_rows = place(callers, plot_px / end_s, plot_px, 0.0, measure)
        probe.remove()
        axes = _layout(fig, width, bot_rows, caller_rows)
        texts = _lane(axes["bot_lane"], bots, bot_rows, BOT_LINES, "bot says")
        _waves(axes, caller, bot, rate)
        texts += _lane(axes["caller_lane"], callers, caller_rows, CALLER_LINES, "caller says")
        _marks(axes, timeline, turns if turns is not None else timeline.turns())
        _vad(axes["vad"], timeline)
        for ax in axes.values():
            ax.set_xlim(0, end_s)
        _legend(fig, axes["bot_lane"], title or f"call of {end_s:.1f} s")
    return fig, texts


def save_timeline(fig: Any, path: Path) -> None:
    """Write the figure as PNG and free it."""
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _font_families() -> list[str]:
    """DejaVu Sans, then an installed CJK font for Chinese transcripts (matplotlib falls back glyph by glyph)."""
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    return ["DejaVu Sans", *[name for name in CJK_FONTS if name in installed]]


def _layout(fig: Any, width: float, bot_rows: int, caller_rows: int) -> dict[str, Any]:
    """Axes stacked top to bottom, sized in inches; the figure's height follows the number of label rows."""
    bot_row_in, caller_row_in = BOT_LINES * LINE_IN + 0.12, CALLER_LINES * LINE_IN + 0.12
    panels = [("bot_lane", bot_rows * bot_row_in + 0.1), ("bot", 0.9), ("caller", 0.9),
              ("caller_lane", caller_rows * caller_row_in + 0.1), ("vad", 1.0)]
    top_in, bottom_in, gap_in = TOP_IN, 0.5, 0.08
    height = top_in + bottom_in + sum(h for _, h in panels) + gap_in * (len(panels) - 1)
    fig.set_size_inches(width, height)
    axes: dict[str, Any] = {}
    y = height - top_in
    for name, h in panels:
        y -= h
        rect = (LEFT_IN / width, y / height, (width - LEFT_IN - RIGHT_IN) / width, h / height)
        axes[name] = fig.add_axes(rect, sharex=axes.get("bot_lane"))
        y -= gap_in
    for name in ("bot_lane", "bot", "caller", "caller_lane"):
        axes[name].tick_params(labelbottom=False)
    return axes


def _lane(ax: Any, labels: list[Label], rows: int, lines: int, name: str) -> list[Any]:
    """Draw labels in rows: a bar for the span, the text under its start; return the text artists."""
    row_h = lines * LINE_IN + 0.12
    ax.set_ylim(rows * row_h, 0)
    ax.set_yticks([])
    ax.set_ylabel(name)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    texts = []
    for label in labels:
        top = label.row * row_h + 0.04
        ax.plot([label.t0, label.t1], [top, top], color=label.color, lw=3, solid_capstyle="butt",
                ls=(0, (2, 1)) if label.italic else "-")
        texts.append(ax.text(label.x, top + 0.05, "\n".join(label.lines), color=label.color, va="top", ha="left",
                             fontsize=FONT_SIZE, style="italic" if label.italic else "normal", linespacing=1.15,
                             clip_on=False))
    return texts


def _waves(axes: dict[str, Any], caller: np.ndarray, bot: np.ndarray, rate: int) -> None:
    for name, track, color in (("bot", bot, BOT_COLOR), ("caller", caller, CALLER_COLOR)):
        ax = axes[name]
        ax.plot(np.arange(len(track)) / rate, track / 32768, lw=0.3, color=color)
        ax.set_ylim(-1, 1)
        ax.set_yticks([])
        ax.set_ylabel(f"{name}\naudio")


def _marks(axes: dict[str, Any], timeline: Timeline, turns: Sequence[dict[str, Any]]) -> None:
    """Barge-in lines across both waveforms, ignored/declined speech hatched, turn ends and partials."""
    style = {"pause": ("tab:red", "--"), "stop": ("tab:red", "-"), "resume": ("tab:orange", "-")}
    for e in timeline.entries:
        if e["kind"] in style:
            color, ls = style[e["kind"]]
            for name in ("bot", "caller"):
                axes[name].axvline(e["t"], color=color, ls=ls, lw=1.0)
        elif e["kind"] == "partial":
            axes["caller"].plot([e["t"]], [-0.88], marker="|", color="gray", ms=5)
        elif e["kind"] == "speech_end":
            axes["caller"].plot([e["t"]], [-0.9], marker="v", color="black", ms=5)
    for turn in turns:
        if turn.get("ignored") and turn.get("onset") is not None:
            color = FATE_COLOR.get(turn.get("barge_in", ""), "dimgray")
            axes["caller"].axvspan(turn["onset"], turn["speech_end"], color=color, alpha=0.18, hatch="///", lw=0)


def _vad(ax: Any, timeline: Timeline) -> None:
    ax.plot(timeline.vad_t, timeline.vad_p, lw=0.8, color="tab:purple", label="speech probability")
    for kind, color, ls, name in (("speech_start", "tab:orange", "-", "speech start"),
                                  ("speech_end", "black", ":", "end of turn")):
        for i, e in enumerate(timeline.of(kind)):
            ax.axvline(e["t"], color=color, lw=0.7, ls=ls, label=name if i == 0 else None)
    ax.set_ylim(-0.05, 1.6)  # headroom above p = 1 for the legend
    ax.set_yticks([0, 0.5, 1])
    ax.set_ylabel("caller VAD")
    ax.set_xlabel("call time (s)")
    ax.legend(loc="upper right", ncol=3, fontsize=FONT_SIZE, frameon=False)


def _legend(fig: Any, top_ax: Any, title: str) -> None:
    """The title and one row explaining every mark, above the top lane."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [
        Line2D([], [], color=BOT_COLOR, lw=3, label="bot prompt"),
        Line2D([], [], color="navy", lw=3, label="caller turn"),
        Line2D([], [], color=CUT_COLOR, lw=3, label="✂ prompt cut by the caller"),
        Patch(facecolor=FATE_COLOR["ignored"], alpha=0.3, hatch="///", label="speech ignored (bot kept talking)"),
        Patch(facecolor=FATE_COLOR["declined"], alpha=0.3, hatch="///", label="barge-in declined (bot resumed)"),
        Line2D([], [], color="tab:red", ls="--", label="bot paused"),
        Line2D([], [], color="tab:red", label="bot stopped"),
        Line2D([], [], color="tab:orange", label="bot resumed"),
        Line2D([], [], color="black", marker="v", ls="", label="end of turn"),
        Line2D([], [], color="gray", marker="|", ls="", label="partial transcript"),
    ]
    fig.suptitle(title, y=1 - 0.12 / fig.get_figheight(), va="top", fontsize=FONT_SIZE + 3)
    fig.legend(handles=handles, loc="upper center", ncol=(len(handles) + 1) // 2, fontsize=FONT_SIZE, frameon=False,
               bbox_to_anchor=(0.5, 1 - 0.42 / fig.get_figheight()), handlelength=1.8, columnspacing=1.2)
