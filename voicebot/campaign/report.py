"""The funnel report of ``voicebot campaign report``: as a table, as CSV, and as PNG charts (matplotlib).

The figures come from :mod:`voicebot.campaign.stats` (attempts counted per stage, disposition, grade, tag and
local hour of day); this module only lays them out. Every share is of the scope's dials unless it says otherwise
(a funnel stage's share is of the stage before it, and of all dials).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

from voicebot.campaign.stats import FUNNEL, GRADES, Figures

LABELS = {"dialed": "dialed", "connected": "connected", "human": "human", "intent": "intent",
          "passed_to_agent": "passed to agent", "agent_answered": "agent answered"}


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:5.1f}%" if whole else "    -"


def table(title: str, figures: Figures, days: dict[str, Figures]) -> str:
    """The report as text: the funnel, dispositions, grades, tags, connect rate by hour, then one line per day."""
    dialed = figures.funnel["dialed"]
    out = [title, "", "funnel                  count  of previous  of dialed"]
    previous = dialed
    for stage in FUNNEL:
        n = figures.funnel[stage]
        out.append(f"  {LABELS[stage]:<20} {n:>6}  {_pct(n, previous):>11}  {_pct(n, dialed):>9}")
        previous = n
    out += ["", "dispositions"] + [f"  {name:<20} {n:>6}  {_pct(n, dialed)}" for name, n in figures.dispositions.most_common()]
    out += ["", "grades"] + [f"  {g:<20} {figures.grades[g]:>6}" for g in GRADES]
    out += ["", "tags"] + ([f"  {t:<20} {n:>6}" for t, n in figures.tags.most_common()] or ["  (none)"])
    out += ["", "connect rate by hour of day (the leads' local time)"]
    out += [f"  {h:02d}:00  {figures.connected_by_hour[h]:>5}/{figures.dialed_by_hour[h]:<5} "
            f"{_pct(figures.connected_by_hour[h], figures.dialed_by_hour[h])}" for h in sorted(figures.dialed_by_hour)]
    if days:
        out += ["", "per day (local)  " + " ".join(f"{LABELS[s]:>15}" for s in FUNNEL)]
        out += [f"  {day}     " + " ".join(f"{f.funnel[s]:>15}" for s in FUNNEL) for day, f in days.items()]
    return "\n".join(out) + "\n"


def rows(figures: Figures, scope: str) -> Iterator[tuple[str, str, str, int, int]]:
    """CSV rows ``(scope, section, item, count, of)``: ``of`` is what the count is a share of (0: no share)."""
    dialed = figures.funnel["dialed"]
    for stage in FUNNEL:
        yield scope, "funnel", stage, figures.funnel[stage], dialed
    for name, n in sorted(figures.dispositions.items()):
        yield scope, "disposition", name, n, dialed
    for grade in GRADES:
        yield scope, "grade", grade, figures.grades[grade], dialed
    for tag, n in sorted(figures.tags.items()):
        yield scope, "tag", tag, n, dialed
    for hour in sorted(figures.dialed_by_hour):
        yield scope, "connected_by_hour", f"{hour:02d}", figures.connected_by_hour[hour], figures.dialed_by_hour[hour]


def to_csv(figures: Figures, days: dict[str, Figures]) -> str:
    """The report as CSV: the campaign's rows (scope ``all``), then each day's (scope the ISO date)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["scope", "section", "item", "count", "of"])
    writer.writerows(rows(figures, "all"))
    for day, day_figures in days.items():
        writer.writerows(rows(day_figures, day))
    return buffer.getvalue()


def charts(figures: Figures, title: str, directory: Path) -> list[Path]:
    """Write funnel.png, dispositions.png, grades.png and connect_by_hour.png into ``directory``; their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    hours = list(range(24))
    rates = [100.0 * (figures.connect_rate(h) or 0.0) for h in hours]
    plots: dict[str, tuple[list[str], list[float], str, bool]] = {
        "funnel": ([LABELS[s] for s in FUNNEL][::-1], [float(figures.funnel[s]) for s in FUNNEL][::-1], "attempts", True),
        "dispositions": (list(figures.dispositions), [float(n) for n in figures.dispositions.values()], "attempts", True),
        "grades": (list(GRADES), [float(figures.grades[g]) for g in GRADES], "graded attempts", False),
        "connect_by_hour": ([f"{h:02d}" for h in hours], rates, "connect rate, % (local hour of day)", False),
    }
    written = []
    for name, (labels, values, axis, horizontal) in plots.items():
        fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
        (ax.barh if horizontal else ax.bar)(labels, values, color="#3b6ea5")
        (ax.set_xlabel if horizontal else ax.set_ylabel)(axis)
        ax.set_title(f"{title}: {name.replace('_', ' ')}")
        fig.tight_layout()
        path = directory / f"{name}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
