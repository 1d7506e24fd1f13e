"""Hearing the caller: VAD, turn-taking and barge-in detection, streaming ASR."""
