"""Hand-off to human agents: the agent directory and live state, and the CRM screen-pop webhook."""
