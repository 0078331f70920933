"""Critics: stages that judge records and count every drop (issue 3; not built yet)."""
