"""Identity service: resolves identifiers to persons (OneID)."""
