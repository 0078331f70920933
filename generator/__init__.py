"""The teacher stage: backends that over-generate, tasks that say what to generate."""
