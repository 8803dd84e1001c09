"""The hot path: validation and the group-commit writer."""
