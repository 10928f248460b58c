"""The layout rules of docs/conventions.md, enforced.

- no component imports another component (they meet only through protos and the kit);
- the kit imports no component; the devstack runs components as processes, never imports them;
- every component declares the in-house packages it imports, has its own entrypoint and its
  own migrations in its own schema.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPONENTS = {
    "cdp_identity": ROOT / "services/identity",
    "cdp_profile": ROOT / "services/profile",
    "cdp_segment": ROOT / "services/segment",
    "cdp_campaign": ROOT / "services/campaign",
    "cdp_gateway": ROOT / "gateway",
}
LIBRARIES = {
    "cdpkit": ROOT / "libs/cdpkit",
    "cdp_analytics": ROOT / "libs/cdp-analytics",
    "cdp_devstack": ROOT / "tools/devstack",
}
IN_HOUSE = {
    **{name: name.replace("_", "-") for name in COMPONENTS},
    "cdpkit": "cdpkit",
    "cdp": "cdp-protos",
    "cdp_analytics": "cdp-analytics",
}


def imported_top_levels(package_dir: Path) -> set[str]:
    found: set[str] = set()
    for path in package_dir.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(COMPONENTS | LIBRARIES))
def test_no_component_imports_another(package):
    directory = (COMPONENTS | LIBRARIES)[package] / package
    others = set(COMPONENTS) - {package}
    assert imported_top_levels(directory) & others == set()


@pytest.mark.parametrize("package", sorted(COMPONENTS))
def test_tests_of_a_component_import_no_other_component(package):
    tests = COMPONENTS[package] / "tests"
    assert imported_top_levels(tests) & (set(COMPONENTS) - {package}) == set()


@pytest.mark.parametrize("package", sorted(COMPONENTS | {"cdpkit": LIBRARIES["cdpkit"]}))
def test_in_house_imports_are_declared_dependencies(package):
    directory = (COMPONENTS | LIBRARIES)[package]
    declared = {
        re.split(r"[<>=!~\[ ;]", dependency, maxsplit=1)[0].lower()
        for dependency in tomllib.loads((directory / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    used = {IN_HOUSE[name] for name in imported_top_levels(directory / package) if name in IN_HOUSE and name != package}
    assert used <= declared


@pytest.mark.parametrize("package", sorted(COMPONENTS))
def test_each_component_has_entrypoint_config_and_its_own_schema(package):
    source = COMPONENTS[package] / package
    for module in (
        "__main__.py",
        "bootstrap.py",
        "config.py",
        "grpc_api.py",
        "service.py" if package != "cdp_gateway" else "ingest.py",
    ):
        assert (source / module).exists(), f"{package} lacks {module}"
    migrations = sorted((source / "migrations").glob("*.sql"))
    assert migrations and migrations[0].name.startswith("0001_")
    schema = re.search(r'SCHEMA = "([a-z_]+)"', (source / "config.py").read_text()).group(1)
    assert schema == package.removeprefix("cdp_")
    for sql in migrations:
        text = sql.read_text().lower()
        # Unqualified names only: migrations run with search_path set to the component's schema.
        other = [s for s in ("identity.", "profile.", "segment.", "campaign.", "gateway.") if s != f"{schema}."]
        assert not [s for s in other if f" {s}" in text], f"{sql} touches another schema"


# Tables that are not workspace data, each with the reason.
NOT_WORKSPACE_DATA = {
    "stream_positions": "how far a consumer has applied a stream that carries every workspace",
}


def test_every_table_carries_the_workspace():
    migrations = [*ROOT.glob("services/*/cdp_*/migrations/*.sql"), *ROOT.glob("gateway/cdp_gateway/migrations/*.sql")]
    migrations += list((LIBRARIES["cdpkit"] / "cdpkit/migrations").glob("*.sql"))
    tables = 0
    for sql in migrations:
        for name, body in re.findall(r"CREATE TABLE (\w+) \((.*?)\n\);", sql.read_text(), flags=re.S):
            tables += 1
            if name in NOT_WORKSPACE_DATA:
                continue
            assert re.search(r"^\s+workspace_id\s", body, flags=re.M), f"{sql.name}: table {name} has no workspace_id"
    assert tables >= 8
