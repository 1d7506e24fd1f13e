"""What a call came to: the data a call record stores, kept by the dialog machine."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Turn:
    """One caller turn: what was said (or pressed) in which node, and what it matched.

    ``text`` is a transcript: personal data. Log it only in marked fields.
    """

    at: float
    node: str
    text: str
    intent: str = ""
    score: float = 0.0
    dtmf: str = ""
    barge_in: bool = False
    ignored: bool = False  # said while the prompt could not be interrupted
    confirm: str = ""  # "asked": an unsure hearing of ``intent`` is being confirmed; "confirmed"/"denied": the answer


@dataclass(frozen=True)
class PromptRecord:
    """One prompt the bot played: how long the caller heard it and whether it was cut short."""

    play_id: int
    node: str
    text: str
    started_at: float | None = None
    finished_at: float | None = None
    interrupted: bool = False
    heard_ms: int = 0


@dataclass
class Outcome:
    """The call's outcome so far; ``disposition`` is set exactly once, when the call ends."""

    variables: dict[str, str] = field(default_factory=dict)
    path: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    level: str = ""
    slots: dict[str, str] = field(default_factory=dict)
    turns: list[Turn] = field(default_factory=list)
    prompts: list[PromptRecord] = field(default_factory=list)
    notifications: list[str] = field(default_factory=list)
    agent_id: str = ""
    disposition: str = ""
    started_at: float | None = None
    ended_at: float | None = None

    def summary(self) -> dict[str, object]:
        """The outcome as plain data (for notifications and JSON), transcripts included."""
        return {
            "path": list(self.path),
            "tags": list(self.tags),
            "level": self.level,
            "slots": dict(self.slots),
            "disposition": self.disposition,
            "agent_id": self.agent_id,
            "turns": len(self.turns),
            "transcript": [t.text for t in self.turns if not t.ignored],
        }
