"""``python -m cdpkit.healthcheck PORT [SERVICE]``: exit 0 when the gRPC health check says SERVING.

For container engines without native gRPC probes (Docker/compose ``healthcheck``). Kubernetes
uses its native ``grpc`` probes instead. SERVICE ``""`` (the default) is readiness: SERVING only
while Postgres and NATS answer; ``liveness`` is SERVING for as long as the process runs.
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(port: int, service: str = "", host: str = "127.0.0.1", timeout: float = 2.0) -> bool:
    try:
        with grpc.insecure_channel(f"{host}:{port}") as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
    except grpc.RpcError:
        return False
    return answer.status == health_pb2.HealthCheckResponse.SERVING


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not 1 <= len(args) <= 2 or not args[0].isdigit():
        print("usage: python -m cdpkit.healthcheck PORT [SERVICE]", file=sys.stderr)
        return 2
    return 0 if check(int(args[0]), args[1] if len(args) == 2 else "") else 1


if __name__ == "__main__":
    sys.exit(main())
