"""Hand-off to human agents: the per-call handoff state machine (``machine``, its events and commands in
``protocol``), the agent directory and live state, the whisper, and the choices the engine makes about handoffs
(the CRM screen-pop webhook is voicebot.notify.screenpop)."""
