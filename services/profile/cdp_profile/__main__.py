"""python -m cdp_profile [serve|migrate|config]"""

from __future__ import annotations

import sys
from pathlib import Path

from cdp_profile.bootstrap import bootstrap
from cdp_profile.config import SCHEMA, Settings

__all__ = ["MIGRATIONS", "SCHEMA", "Settings", "bootstrap", "main"]
from cdpkit.cli import service_main

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def main() -> int:
    return service_main(
        service="profile", settings_class=Settings, schema=SCHEMA, migrations=MIGRATIONS, bootstrap=bootstrap
    )


if __name__ == "__main__":
    sys.exit(main())
