"""Notifications to systems outside the call: the agent screen-pop over HTTP."""
