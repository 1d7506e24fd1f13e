"""Parallel-data voice conversion: the pack's neural voice turned toward the agent's own voice.

``world``: WORLD analysis and synthesis; ``align``: DTW; ``mapping``: the spectral mappings (the residual class
shift, ``voice train``'s default, and the joint-density GMM) with global variance, and the log-F0 transform;
``trajectory``: deltas and MLPG for the GMM over static + delta features; ``measure``: the guards (similarity,
WER, F0, HNR, distortion); ``train``: ``voicebot voice train``.
"""
