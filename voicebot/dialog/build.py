"""Build a :class:`~voicebot.dialog.flow.Flow` from checked flow data (defaults merged, listening inferred)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from voicebot.dialog.flow import (
    LANGUAGES,
    AsrPass,
    BargeIn,
    BargeInAction,
    BargeInMode,
    Flow,
    HandoffSettings,
    IntentDef,
    Listen,
    Node,
    Retry,
    Say,
    Transfer,
    Utterance,
    Variable,
)
from voicebot.yamldoc import Doc, KeyPath

__all__ = ["LISTEN_KEYS", "build_flow", "is_per_language"]

LISTEN_KEYS = ("on", "dtmf", "default", "capture", "listen")


# --- building the Flow (data is schema-valid here) ---------------------------


def build_flow(doc: Doc, source: str) -> Flow:
    """The :class:`Flow` for schema-valid data (targets may still dangle)."""
    data: dict[str, Any] = doc.data
    meta: dict[str, Any] = data["flow"]
    defaults: dict[str, Any] = data.get("defaults", {})
    nodes = {node_id: _build_node(node_id, spec, defaults) for node_id, spec in data["nodes"].items()}
    options = {
        "voice": meta.get("voice"),
        "max_duration_s": _opt(float, meta.get("max_duration_s")),
        "max_turns": _opt(int, meta.get("max_turns")),
        "on_limit": meta.get("on_limit"),
        "min_intent_score": _opt(float, meta.get("min_intent_score")),
        "confirm_below": _opt(float, meta.get("confirm_below")),
    }
    return Flow(
        id=meta["id"],
        version=doc.raw.get(("flow", "version"), str(meta["version"])),
        language=meta["language"],
        start=meta["start"],
        nodes=nodes,
        variables=_build_variables(doc),
        intents=_build_intents(data.get("intents", {}), meta["language"]),
        global_routes=dict(data.get("global", {})),
        hangup_notify=name_tuple(meta.get("on_hangup", {}).get("notify")),
        handoff=HandoffSettings(**meta.get("handoff", {})),
        source=source,
        **{key: value for key, value in options.items() if value is not None},
    )


def _opt(kind: Callable[[Any], Any], value: Any) -> Any:
    """``kind(value)``, or None when the value is absent."""
    return None if value is None else kind(value)


def name_tuple(value: Any) -> tuple[str, ...]:
    """A name or a list of names as a tuple (None -> empty)."""
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _build_node(node_id: str, spec: dict[str, Any], defaults: dict[str, Any]) -> Node:
    """A :class:`Node`: defaults merged, listening inferred, capture + next -> default."""
    listens = any(key in spec for key in LISTEN_KEYS)
    default, next_ = spec.get("default", ""), spec.get("next", "")
    if listens and next_:
        default, next_ = default or next_, ""
    transfer = spec.get("transfer")
    return Node(
        id=node_id,
        say=_build_say(spec.get("say")),
        listen=_build_listen(defaults.get("listen"), spec.get("listen")) if listens else None,
        barge_in=_build_barge_in(defaults.get("barge_in"), spec.get("barge_in")),
        routes=dict(spec.get("on", {})),
        dtmf=dict(spec.get("dtmf", {})),
        default=default,
        no_input=_build_retry(defaults.get("no_input"), spec.get("no_input")),
        no_match=_build_retry(defaults.get("no_match"), spec.get("no_match")),
        next=next_,
        tags=name_tuple(spec.get("tags")),
        level=spec.get("level", ""),
        capture=dict(spec.get("capture", {})),
        notify=name_tuple(spec.get("notify")),
        prepare=spec.get("prepare", ""),
        transfer=_build_transfer(transfer) if transfer is not None else None,
        hangup=spec.get("hangup", ""),
        globals_enabled=spec.get("globals", True),
    )


def _build_listen(default: dict[str, Any] | None, own: dict[str, Any] | None) -> Listen:
    """Listen timings: the node's keys over ``defaults.listen`` over the dataclass defaults."""
    merged = {**(default or {}), **(own or {})}
    values: dict[str, Any] = {key: int(value) for key, value in merged.items() if key != "asr"}
    if "asr" in merged:
        values["asr"] = AsrPass(merged["asr"])
    return Listen(**values)


def _barge_in_fields(value: Any) -> dict[str, Any]:
    """Barge-in keys from the long form or the shorthand (``off``, ``on``, ``protected``, booleans)."""
    if value is None:
        return {}
    fields = dict(value) if isinstance(value, dict) else {"mode": value}
    if isinstance(fields.get("mode"), bool):
        fields["mode"] = "on" if fields["mode"] else "off"
    return fields


def _build_barge_in(default: Any, own: Any) -> BargeIn:
    """A :class:`BargeIn`: the node's keys over ``defaults.barge_in`` over the dataclass defaults."""
    merged = {**_barge_in_fields(default), **_barge_in_fields(own)}
    values: dict[str, Any] = {key: int(value) for key, value in merged.items() if key not in ("mode", "action")}
    if "mode" in merged:
        values["mode"] = BargeInMode(merged["mode"])
    if "action" in merged:
        values["action"] = BargeInAction(merged["action"])
    return BargeIn(**values)


def _build_retry(default: dict[str, Any] | None, own: dict[str, Any] | None) -> Retry:
    """A :class:`Retry`: the node's keys over the defaults' keys; ``then`` empty when absent."""
    merged = {**(default or {}), **(own or {})}
    values: dict[str, Any] = {"then": merged.get("then", "")}
    if "retries" in merged:
        values["retries"] = int(merged["retries"])
    if "reprompt" in merged:
        values["reprompt"] = _build_say(merged["reprompt"])
    return Retry(**values)


def _build_say(value: Any) -> Say:
    """A :class:`Say` from any say form: text, list of variants, utterance, or {variants, order}."""
    if value is None:
        return Say()
    if isinstance(value, dict) and "variants" in value:
        variants = tuple(_build_utterance(item) for item in value["variants"])
        return Say(variants, value["order"]) if "order" in value else Say(variants)
    items = value if isinstance(value, list) else [value]
    return Say(tuple(_build_utterance(item) for item in items))


def _build_utterance(value: Any) -> Utterance:
    """An :class:`Utterance` from text or ``{prompt, text}``."""
    if isinstance(value, str):
        return Utterance(text=value)
    return Utterance(text=value.get("text", ""), prompt=value.get("prompt", ""))


def _build_transfer(spec: dict[str, Any]) -> Transfer:
    """A :class:`Transfer`; absent ``on_timeout``/``on_fail`` are empty strings."""
    values: dict[str, Any] = {key: spec.get(key, "") for key in ("on_timeout", "on_fail", "after_agent")}
    if "timeout_s" in spec:
        values["timeout_s"] = float(spec["timeout_s"])
    return Transfer(group=spec["group"], hold=_build_say(spec.get("hold")), **values)


def _build_variables(doc: Doc) -> dict[str, Variable]:
    """Variables; a bare value is a default, the type defaults to the default's YAML type."""
    out: dict[str, Variable] = {}
    for name, spec in doc.data.get("variables", {}).items():
        path: KeyPath = ("variables", name)
        if isinstance(spec, dict):
            path, default = (*path, "default"), spec.get("default")
            declared, pii = spec.get("type"), spec.get("pii", False)
        else:
            default, declared, pii = spec, None, False
        text = None if default is None else doc.raw.get(path, str(default))
        out[name] = Variable(name, declared or _value_type(default), text, pii)
    return out


def _value_type(value: Any) -> str:
    """The variable type a YAML scalar suggests."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    return "float" if isinstance(value, float) else "string"


def is_per_language(spec: Mapping[str, Any]) -> bool:
    """Whether an intent is written with language sections (``en:``, ``zh:``)."""
    return any(language in spec for language in LANGUAGES)


def _build_intents(specs: dict[str, Any], language: str) -> dict[str, IntentDef]:
    """Intents for the flow's language (per-language intents give their section)."""
    out: dict[str, IntentDef] = {}
    for name, spec in specs.items():
        phrases = spec.get(language, {}) if is_per_language(spec) else spec
        out[name] = IntentDef(
            name,
            keywords=name_tuple(phrases.get("keywords")),
            regex=name_tuple(phrases.get("regex")),
            examples=name_tuple(phrases.get("examples")),
            confirm=_build_say(phrases.get("confirm", spec.get("confirm"))),
        )
    return out

