"""Small flows built in Python for dialog-machine tests (no YAML loader involved)."""

from __future__ import annotations

from voicebot.dialog.flow import (
    BargeIn,
    BargeInAction,
    BargeInMode,
    Flow,
    IntentDef,
    Listen,
    Node,
    Retry,
    Say,
    Transfer,
    Utterance,
    Variable,
)


def say(*texts: str) -> Say:
    """A Say with one variant per text."""
    return Say(tuple(Utterance(t) for t in texts))


LISTEN = Listen(no_input_ms=5000, max_speech_ms=15000, end_silence_ms=600)


def screening_flow(*, greet_barge_in: BargeIn | None = None, max_turns: int = 30, on_limit: str = "",
                   after_agent: str = "") -> Flow:
    """A lead-screening flow with every kind of ending: hang-up, transfer, retries, globals."""
    nodes = {
        "greet": Node(
            "greet", say("Hi, is this {{name}}?"), LISTEN, greet_barge_in or BargeIn(),
            routes={"yes": "pitch", "no": "wrong_person"}, dtmf={"1": "pitch", "2": "wrong_person"},
            no_input=Retry(1, say("Hello, are you there?"), "bye_no_answer"),
            no_match=Retry(1, say("Sorry, is this {{name}}?"), "bye_no_answer"),
        ),
        "pitch": Node(
            "pitch", say("We have a new savings plan. Interested?"), LISTEN,
            routes={"yes": "hot", "no": "bye_not_interested"}, tags=("confirmed",), level="C",
        ),
        "hot": Node("hot", say("Great, connecting you now."), tags=("interested",), level="A", notify=("sms_invite",),
                    transfer=Transfer("sales", say("Please hold."), 10.0, "callback", after_agent=after_agent)),
        "callback": Node("callback", say("When can we call you back?"), LISTEN, capture={"callback_time": "time"},
                         default="bye_callback"),
        "bye_callback": Node("bye_callback", say("We will call you {{callback_time}}."), hangup="callback"),
        "robot": Node("robot", say("Yes, I am a virtual assistant."), next="return"),
        "wrong_person": Node("wrong_person", say("Sorry to bother you."), hangup="wrong_person"),
        "bye_not_interested": Node("bye_not_interested", say("Thanks, goodbye."), hangup="not_interested",
                                   tags=("not_interested",), level="D"),
        "bye_blocklist": Node("bye_blocklist", say("We won't call again."), hangup="blocklist", tags=("blocklist",)),
        "bye_no_answer": Node("bye_no_answer", say("Goodbye."), hangup="no_answer"),
        "bye_limit": Node("bye_limit", say("We are out of time, goodbye."), hangup="limit"),
    }
    intents = {
        "yes": IntentDef("yes", keywords=("yes", "yeah", "sure", "speaking")),
        "no": IntentDef("no", keywords=("no", "nope", "not interested")),
        "robot": IntentDef("robot", keywords=("robot", "real person")),
        "stop": IntentDef("stop", keywords=("stop calling",)),
        "again": IntentDef("again", keywords=("say that again", "repeat")),
    }
    return Flow(
        id="screening", version="1", language="en", start="greet", nodes=nodes,
        variables={"name": Variable("name", default="there")}, intents=intents,
        global_routes={"robot": "robot", "stop": "bye_blocklist", "again": "repeat"},
        max_duration_s=120, max_turns=max_turns, on_limit=on_limit, hangup_notify=("call_outcome",),
    )


PROTECTED = BargeIn(BargeInMode.PROTECTED, protect_ms=2000, min_speech_ms=200, min_words=1)
REPEAT_ON_BARGE = BargeIn(BargeInMode.ON, min_speech_ms=0, min_words=0, action=BargeInAction.REPEAT)
