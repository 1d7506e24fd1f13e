"""Small decisions the engine makes about handoffs: which group a flow is for, which voices to load."""

from __future__ import annotations

from pathlib import Path

from voicebot.dialog.flow import Flow
from voicebot.handoff.agents import AgentDirectory


def handoff_group(flow: Flow) -> str:
    """The group calls of ``flow`` go to: ``flow.handoff.group``, else the first prepared or transfer group."""
    if flow.handoff.group:
        return flow.handoff.group
    for node in flow.nodes.values():
        for group in (node.prepare, node.transfer.group if node.transfer else ""):
            if group:
                return group
    return ""


def agent_voices(directory: AgentDirectory, flow: Flow) -> list[Path]:
    """Voice packs of the agents ``flow``'s calls can reach: the engine renders the flow's prompts in each."""
    group = directory.groups.get(handoff_group(flow))
    if group is None:
        return []
    voices = (directory.agents[a].voice for a in group.agents if a in directory.agents)
    return [Path(v) for v in dict.fromkeys(v for v in voices if v)]
