"""Call flows: the flow model, loader/validator, intents, slots and the sans-I/O dialog machine."""
