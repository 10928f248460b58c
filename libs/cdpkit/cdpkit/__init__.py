"""The CDP's shared runtime kit.

Small, boring building blocks that every component uses the same way:

- ``config``      typed settings from environment variables, failing fast
- ``logging``     structlog setup (JSON off a TTY), contextvars, PII masking
- ``db``          asyncpg pool; ``migrate`` numbered SQL migrations per schema
- ``bus``         NATS/JetStream connection, the stream catalogue, partitioning
- ``consumer``    durable pull-consumer loop: batch, ack after commit, backoff, dead letters
- ``outbox``      transactional outbox and its relay to JetStream
- ``server``      grpc.aio server factory: health, reflection, interceptors
- ``runtime``     process lifecycle: readiness, metrics endpoint, graceful shutdown
- ``errors``      domain errors and their gRPC / HTTP mapping
- ``names``, ``pagination``, ``ids``, ``clock``  small helpers shared by the APIs
"""
