#!/usr/bin/env python3
"""Print the Secrets the CDP's manifests reference, with fresh random values, as a Kubernetes List
(or, for compose, as a .env file).

    python3 deploy/make-secrets.py dev  | kubectl create -n cdp-dev -f -
    python3 deploy/make-secrets.py prod | kubectl create -n cdp -f -
    python3 deploy/make-secrets.py compose > deploy/compose/.env      # once; .env is git-ignored

``kubectl create`` refuses Secrets that exist already, so running it again never rotates a
password behind a running database's back (rotation: docs/operations.md). Nothing is written
to disk; only the Python standard library is needed.

Per component: cdp-<component>-db-owner (the schema owner, for the migration Job) and
cdp-<component>-db-app (the running service), both kubernetes.io/basic-auth (username,
password: what CloudNativePG's managed roles read) plus url (CDP_DATABASE_URL). Also cdp-pii
(CDP_PII_KEYS, CDP_PII_HASH_KEY, for the services that store personal data) and, for dev, the
PostgreSQL superuser's password.
"""

from __future__ import annotations

import base64
import json
import secrets
import sys

COMPONENTS = ("gateway", "identity", "profile", "segment", "campaign")
ENVIRONMENTS = ("dev", "prod", "compose")
DATABASE = {
    # host:port and TLS mode of the read-write endpoint
    "dev": ("postgres:5432", "disable"),
    "prod": ("cdp-postgres-rw:5432", "require"),
}


def secret(name: str, data: dict[str, str], kind: str = "Opaque") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "cdp"}},
        "type": kind,
        "stringData": data,
    }


def role_secret(name: str, role: str, host: str, sslmode: str) -> dict:
    password = secrets.token_hex(24)  # URL-safe as it is
    url = f"postgresql://{role}:{password}@{host}/cdp?sslmode={sslmode}"
    return secret(name, {"username": role, "password": password, "url": url}, "kubernetes.io/basic-auth")


def key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ENVIRONMENTS:
        print(__doc__, file=sys.stderr)
        return 2
    environment = argv[0]
    if environment == "compose":
        lines = [f"CDP_POSTGRES_PASSWORD={secrets.token_hex(24)}"]
        for component in COMPONENTS:
            for kind in ("OWNER", "APP"):
                lines.append(f"PW_{component.upper()}_{kind}={secrets.token_hex(24)}")
        lines += [f"CDP_PII_KEYS=k1:{key()}", f"CDP_PII_HASH_KEY={key()}"]
        print("\n".join(lines))
        return 0
    host, sslmode = DATABASE[environment]
    items = []
    for component in COMPONENTS:
        items.append(role_secret(f"cdp-{component}-db-owner", f"cdp_{component}", host, sslmode))
        items.append(role_secret(f"cdp-{component}-db-app", f"cdp_{component}_app", host, sslmode))
    items.append(secret("cdp-pii", {"CDP_PII_KEYS": f"k1:{key()}", "CDP_PII_HASH_KEY": key()}))
    if environment == "dev":
        items.append(secret("cdp-postgres-superuser", {"username": "postgres", "password": secrets.token_hex(24)}))
    json.dump({"apiVersion": "v1", "kind": "List", "items": items}, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
