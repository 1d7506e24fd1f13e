"""voicebot: an on-premises real-time voice-bot engine for FreeSWITCH."""

__version__ = "0.1.0"
