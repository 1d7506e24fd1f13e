"""fsdouble: a FreeSWITCH test double (ESL and unicast media as FreeSWITCH 1.11.1 does them) for tests and benchmarks.

It is a test tool, not part of the engine: ``voicebot`` never imports it (tests/test_import_rules.py).
Everything public lives in :mod:`fsdouble.double`.
"""
