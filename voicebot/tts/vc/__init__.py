"""Parallel-data voice conversion: the pack's neural voice turned toward the agent's own voice.

``world``: WORLD analysis and synthesis; ``align``: DTW; ``mapping``: the joint-density GMM with global
variance and the log-F0 transform; ``measure``: the guards (similarity, WER, F0, HNR, distortion);
``train``: ``voicebot voice train PACK``.
"""
