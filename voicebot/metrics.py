"""Engine metrics in Prometheus text format (no client library needed for this handful)."""

from __future__ import annotations

from dataclasses import dataclass, field

LATENCY_BUCKETS_MS = (50, 100, 150, 200, 300, 400, 500, 600, 800, 1000, 1500, 2000, 5000)


@dataclass
class Histogram:
    """A cumulative histogram of milliseconds."""

    name: str
    help: str
    buckets: tuple[int, ...] = LATENCY_BUCKETS_MS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def observe(self, value_ms: float) -> None:
        """Count one value."""
        if not self.counts:
            self.counts = [0] * len(self.buckets)
        for i, bound in enumerate(self.buckets):
            if value_ms <= bound:
                self.counts[i] += 1
        self.total += value_ms
        self.n += 1

    def lines(self) -> list[str]:
        """The histogram's exposition lines."""
        counts = self.counts or [0] * len(self.buckets)
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        out += [f'{self.name}_bucket{{le="{b}"}} {c}' for b, c in zip(self.buckets, counts, strict=True)]
        out += [f'{self.name}_bucket{{le="+Inf"}} {self.n}', f"{self.name}_sum {self.total:g}", f"{self.name}_count {self.n}"]
        return out


@dataclass
class Metrics:
    """Counters and histograms of one engine process."""

    active_calls: int = 0
    calls_total: int = 0
    rejected: int = 0
    errors: int = 0
    response_ms: Histogram = field(default_factory=lambda: Histogram(
        "voicebot_response_latency_ms", "Caller end of speech to first bot audio, per turn (ms)."))
    barge_in_ms: Histogram = field(default_factory=lambda: Histogram(
        "voicebot_barge_in_reaction_ms", "Caller speech onset to the bot pausing (ms)."))

    def call_started(self) -> None:
        """A call was taken."""
        self.active_calls += 1
        self.calls_total += 1

    def call_ended(self) -> None:
        """A call is over."""
        self.active_calls = max(0, self.active_calls - 1)

    def prometheus(self, *, esl_up: bool, accepting: bool) -> str:
        """Everything in Prometheus text exposition format."""
        gauges = [("voicebot_active_calls", "gauge", "Calls in progress.", self.active_calls),
                  ("voicebot_calls_total", "counter", "Calls taken.", self.calls_total),
                  ("voicebot_calls_rejected_total", "counter", "Calls refused (busy or shutting down).", self.rejected),
                  ("voicebot_call_errors_total", "counter", "Calls that ended on an engine error.", self.errors),
                  ("voicebot_freeswitch_up", "gauge", "1 while the inbound ESL connection is up.", int(esl_up)),
                  ("voicebot_accepting_calls", "gauge", "0 while shutting down.", int(accepting))]
        lines: list[str] = []
        for name, kind, text, value in gauges:
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name} {value}"]
        return "\n".join(lines + self.response_ms.lines() + self.barge_in_ms.lines()) + "\n"
