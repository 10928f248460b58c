"""Gateway: the only door. Segment-compatible collection, JSON/gRPC APIs, keys."""
