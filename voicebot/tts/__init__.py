"""Speaking as the agent: voices, voice packs, prompt rendering and cache."""
