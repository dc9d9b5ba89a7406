"""The plan: reading the stack config, the frozen model, and its validation."""
