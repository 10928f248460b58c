"""JSON schemas for the custom resources the prod overlay uses (CloudNativePG and its Barman Cloud
plugin), which kubernetes-validate does not ship.

Written by us from the operators' API reference, for the fields we use: unknown fields are
errors at every level we describe, so a typo fails here instead of being pruned by the API
server. They are a subset of the real CRDs, not a copy: a field the real CRD rejects for a
reason not modelled here (a value range, a cross-field rule) would only fail at apply time.
"""

from __future__ import annotations

_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}
_QUANTITY = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$"}
_SECRET_KEY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "key"],
    "properties": {"name": _NAME, "key": {"type": "string"}},
}


def _object(properties: dict, required: tuple[str, ...] = ()) -> dict:
    return {"type": "object", "additionalProperties": False, "required": list(required), "properties": properties}


def _resource(api_version: str, kind: str, spec: dict) -> dict:
    return _object(
        {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": _NAME, "namespace": _NAME, "labels": {"type": "object"}},
            },
            "spec": spec,
        },
        ("apiVersion", "kind", "metadata", "spec"),
    )


_RESOURCES = _object(
    {
        "requests": _object({"cpu": _QUANTITY, "memory": _QUANTITY}),
        "limits": _object({"cpu": _QUANTITY, "memory": _QUANTITY}),
    }
)

_ROLE = _object(
    {
        "name": {"type": "string", "pattern": r"^[a-z_][a-z0-9_]*$"},
        "ensure": {"enum": ["present", "absent"]},
        "login": {"type": "boolean"},
        "comment": {"type": "string"},
        "connectionLimit": {"type": "integer", "minimum": -1},
        "inRoles": {"type": "array", "items": {"type": "string"}},
        "passwordSecret": _object({"name": _NAME}, ("name",)),
    },
    ("name",),
)

CLUSTER = _resource(
    "postgresql.cnpg.io/v1",
    "Cluster",
    _object(
        {
            "instances": {"type": "integer", "minimum": 1},
            "imageName": {"type": "string"},
            "primaryUpdateStrategy": {"enum": ["unsupervised", "supervised"]},
            "enableSuperuserAccess": {"type": "boolean"},
            "postgresql": _object({"parameters": {"type": "object", "additionalProperties": {"type": "string"}}}),
            "bootstrap": _object(
                {
                    "initdb": _object(
                        {
                            "database": {"type": "string"},
                            "owner": {"type": "string"},
                            "postInitApplicationSQLRefs": _object(
                                {
                                    "configMapRefs": {"type": "array", "items": _SECRET_KEY},
                                    "secretRefs": {"type": "array", "items": _SECRET_KEY},
                                }
                            ),
                        }
                    )
                }
            ),
            "managed": _object({"roles": {"type": "array", "items": _ROLE}}),
            "storage": _object({"size": _QUANTITY, "storageClass": {"type": "string"}}, ("size",)),
            "walStorage": _object({"size": _QUANTITY, "storageClass": {"type": "string"}}, ("size",)),
            "resources": _RESOURCES,
            "affinity": _object({"enablePodAntiAffinity": {"type": "boolean"}, "topologyKey": {"type": "string"}}),
            "inheritedMetadata": _object({"labels": {"type": "object", "additionalProperties": {"type": "string"}}}),
            "monitoring": _object({"enablePodMonitor": {"type": "boolean"}}),
            "plugins": {
                "type": "array",
                "items": _object(
                    {
                        "name": {"type": "string"},
                        "isWALArchiver": {"type": "boolean"},
                        "parameters": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                    ("name",),
                ),
            },
        },
        ("instances", "storage"),
    ),
)

OBJECT_STORE = _resource(
    "barmancloud.cnpg.io/v1",
    "ObjectStore",
    _object(
        {
            "retentionPolicy": {"type": "string", "pattern": r"^[1-9][0-9]*[dwm]$"},
            "configuration": _object(
                {
                    "destinationPath": {"type": "string", "pattern": r"^(s3|gs|https?)://"},
                    "endpointURL": {"type": "string"},
                    "s3Credentials": _object(
                        {"accessKeyId": _SECRET_KEY, "secretAccessKey": _SECRET_KEY},
                        ("accessKeyId", "secretAccessKey"),
                    ),
                    "wal": _object({"compression": {"enum": ["gzip", "bzip2", "snappy", "lz4", "xz", "zstd"]}}),
                    "data": _object({"compression": {"enum": ["gzip", "bzip2", "snappy"]}}),
                },
                ("destinationPath",),
            ),
        },
        ("configuration",),
    ),
)

SCHEDULED_BACKUP = _resource(
    "postgresql.cnpg.io/v1",
    "ScheduledBackup",
    _object(
        {
            # Six fields: seconds first (robfig/cron with seconds, as CloudNativePG uses).
            "schedule": {"type": "string", "pattern": r"^\S+( \S+){5}$"},
            "backupOwnerReference": {"enum": ["none", "self", "cluster"]},
            "cluster": _object({"name": _NAME}, ("name",)),
            "method": {"enum": ["barmanObjectStore", "volumeSnapshot", "plugin"]},
            "pluginConfiguration": _object({"name": {"type": "string"}}, ("name",)),
        },
        ("schedule", "cluster"),
    ),
)

CUSTOM_RESOURCE_SCHEMAS = {
    "postgresql.cnpg.io/v1/Cluster": CLUSTER,
    "barmancloud.cnpg.io/v1/ObjectStore": OBJECT_STORE,
    "postgresql.cnpg.io/v1/ScheduledBackup": SCHEDULED_BACKUP,
}
