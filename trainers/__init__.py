"""Student training (issue 5; not built yet)."""
