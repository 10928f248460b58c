"""Local development and test infrastructure: PostgreSQL and NATS from pip wheels, the `cdp` command."""
