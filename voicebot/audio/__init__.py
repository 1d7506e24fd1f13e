"""Audio at the edges: the one frame type, G.711 codecs, resampling, re-framing."""
