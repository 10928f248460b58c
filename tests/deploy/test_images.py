"""The images and the compose file, checked without a Docker engine.

- deploy/Dockerfile is parsed: multi-stage, the final stage non-root with nothing but the
  built virtualenv, the build stage installing exactly the component's closure.
- That closure is built for real: wheels of every in-house package (pip wheel), installed per
  component with ``--no-deps`` into its own directory, which must hold exactly the component
  and its in-house libraries (cdpkit, cdp-protos, ...), and from which
  ``python -m cdp_<component> config`` runs while no other component can be imported.
  Third-party packages each component needs are pinned in deploy/constraints.txt.
- deploy/compose/compose.yaml is parsed: images built from that Dockerfile, one-shot migrations
  as the schema owner before each service runs as its app role, variables the component reads.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from tests.deploy.render import COMPONENTS, ROOT, config_variables

DOCKERFILE = ROOT / "deploy/Dockerfile"
COMPOSE = ROOT / "deploy/compose/compose.yaml"
IN_HOUSE = {
    # Every library under libs/ (cdp-protos, cdpkit, and any added later) and the components.
    **{
        tomllib.loads(path.read_text())["project"]["name"]: path.parent
        for path in sorted((ROOT / "libs").glob("*/pyproject.toml"))
    },
    **{f"cdp-{c}": ROOT / ("gateway" if c == "gateway" else f"services/{c}") for c in COMPONENTS},
}
GRPC_PORT = {"gateway": 50051, "identity": 50061, "profile": 50062, "segment": 50063, "campaign": 50064}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# Dockerfile


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def expand(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: variables.get(m.group(1), m.group(0)), value)


def stages(build_args: dict[str, str]) -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages with ARG defaults and build args substituted."""
    out: list[list[tuple[str, str]]] = []
    variables = dict(build_args)
    for instruction, arguments in instructions(DOCKERFILE.read_text()):
        if instruction == "ARG":
            name, _, default = arguments.partition("=")
            if name not in build_args and default:
                variables[name] = expand(default, variables)
            continue
        if instruction == "FROM":
            out.append([])
        if out:
            out[-1].append((instruction, expand(arguments, variables)))
    return out


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def build_args(component: str) -> dict[str, str]:
    build = compose()["services"][f"{component}-migrate"]["build"]
    assert build["dockerfile"] == "deploy/Dockerfile"
    assert (COMPOSE.parent / build["context"]).resolve() == ROOT
    return {k: str(v) for k, v in build["args"].items()}


def in_house_requirements(directory: Path) -> set[str]:
    dependencies = tomllib.loads((directory / "pyproject.toml").read_text())["project"].get("dependencies", [])
    return {normalise(Requirement(d).name) for d in dependencies} & set(IN_HOUSE)


def closure(distribution: str) -> set[str]:
    found = {distribution}
    for requirement in in_house_requirements(IN_HOUSE[distribution]):
        found |= closure(requirement)
    return found


@pytest.mark.parametrize("component", COMPONENTS)
def test_dockerfile_builds_the_component_alone_and_runs_it_unprivileged(component):
    args = build_args(component)
    assert args["COMPONENT"] == component
    build, final = stages(args)
    assert build[0][1].endswith("AS build")

    # The build stage installs the component and its in-house closure (LIBS, from the compose
    # build args or the Dockerfile's default) and nothing else.
    copied = {a.split()[0] for i, a in build if i == "COPY"}
    component_dir = str(IN_HOUSE[f"cdp-{component}"].relative_to(ROOT))
    assert copied == {"deploy/constraints.txt", "libs", component_dir}
    (install,) = [a for i, a in build if i == "RUN" and "pip install" in a]
    libs = re.search(r"for lib in ([^;]*);", install).group(1).strip('"').split()
    expected = {IN_HOUSE[d].name for d in closure(f"cdp-{component}") - {f"cdp-{component}"}}
    # A component that starts depending on another library (libs/...) needs it in LIBS (compose).
    assert set(libs) == expected
    assert "-c constraints.txt $(for lib in" in install and 'do echo "./libs/$lib"; done) ./component' in install
    assert f'ln -s "cdp-{component}" /opt/cdp/bin/cdp-component' in install
    scripts = tomllib.loads((IN_HOUSE[f"cdp-{component}"] / "pyproject.toml").read_text())["project"]["scripts"]
    assert f"cdp-{component}" in scripts

    # The final stage: only the virtualenv from the build stage, a numeric non-root user.
    assert all("--from=build" in a for i, a in final if i == "COPY")
    assert not [a for i, a in final if i == "RUN" and ("pip" in a or "apt-get" in a)]
    (user,) = [a for i, a in final if i == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    (entrypoint,) = [a for i, a in final if i == "ENTRYPOINT"]
    assert entrypoint == '["/opt/cdp/bin/cdp-component"]'
    # Every variable the image sets is one the component reads.
    env_names = set(re.findall(r"\b(CDP_[A-Z_]+)=", " ".join(a for i, a in final if i == "ENV")))
    assert env_names and env_names <= set(config_variables(component))

    ignored = (ROOT / "deploy/Dockerfile.dockerignore").read_text().splitlines()
    assert "**" in ignored and "**/tests/" in ignored


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[str, Path]:
    """A wheel of every in-house package, built as the image build does (pip, setuptools)."""
    out = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out)]
        + [str(path) for path in IN_HOUSE.values()],
        check=True,
        capture_output=True,
    )
    built = {}
    for wheel in out.glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            name = re.search(r"^Name: (.+)$", archive.read(metadata).decode(), re.M).group(1)
        built[normalise(name)] = wheel
    assert set(built) == set(IN_HOUSE)
    return built


def wheel_requirements(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        text = archive.read(metadata).decode()
    requirements = [Requirement(line.split(":", 1)[1]) for line in re.findall(r"^Requires-Dist: .+$", text, re.M)]
    # Optional extras (e.g. identity's `bench`) are not part of an image.
    return {normalise(r.name) for r in requirements if not (r.marker and "extra" in str(r.marker))}


def third_party_closure(names: set[str]) -> dict[str, str]:
    """name -> installed version of every third-party distribution ``names`` need, transitively."""
    seen: dict[str, str] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen or name in IN_HOUSE:
            continue
        distribution = importlib.metadata.distribution(name)
        seen[name] = distribution.version
        for line in distribution.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(normalise(requirement.name))
    return seen


@pytest.mark.parametrize("component", COMPONENTS)
def test_an_image_holds_its_component_and_its_dependencies_only(component, wheels, tmp_path):
    # The in-house closure, read from the built wheels' metadata (what pip resolves in the image).
    needed = {f"cdp-{component}"}
    todo = [f"cdp-{component}"]
    while todo:
        for requirement in wheel_requirements(wheels[todo.pop()]) & set(IN_HOUSE):
            if requirement not in needed:
                needed.add(requirement)
                todo.append(requirement)
    assert needed == closure(f"cdp-{component}")

    target = tmp_path / "image"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(target)]
        + [str(wheels[name]) for name in sorted(needed)],
        check=True,
        capture_output=True,
    )
    top_level = {p.name for p in target.iterdir() if not p.name.endswith(".dist-info") and p.name != "bin"}
    packages = {"cdp-protos": "cdp", "cdpkit": "cdpkit", "cdp-analytics": "cdp_analytics"}
    assert top_level == {f"cdp_{component}"} | {packages[n] for n in needed - {f"cdp-{component}"}}
    assert list((target / f"cdp_{component}/migrations").glob("0001_*.sql")), "migrations ship in the wheel"
    assert list((target / "cdpkit/migrations").glob("0001_*.sql"))
    assert not list(target.rglob("tests")), "no tests in an image"

    # Run it with only that directory and the third-party packages on the path: no editable
    # installs (python -S skips the .pth files that make them importable).
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CDP_", "PYTHON"))},
        "PYTHONPATH": os.pathsep.join([str(target), sysconfig.get_paths()["purelib"]]),
    }

    def python(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-S", *args], env=env, cwd=tmp_path, capture_output=True, text=True, check=False
        )

    listed = python("-m", f"cdp_{component}", "config")
    assert listed.returncode == 0, listed.stderr
    assert "CDP_DATABASE_URL" in listed.stdout
    for other in COMPONENTS:
        if other != component:
            assert python("-c", f"import cdp_{other}").returncode != 0, f"cdp_{other} is importable"

    # Every third-party package it needs is pinned, at the version the tests ran with.
    pins = dict(
        line.split("==")
        for line in (ROOT / "deploy/constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    needs = third_party_closure(set().union(*(wheel_requirements(wheels[n]) for n in needed)) - set(IN_HOUSE))
    assert needs
    for name, version in needs.items():
        assert pins.get(name) == version, f"deploy/constraints.txt: {name}=={version} (pinned: {pins.get(name)})"


def service_env(service: dict) -> dict[str, str]:
    return {k: str(v) for k, v in (service.get("environment") or {}).items()}


@pytest.mark.parametrize("component", COMPONENTS)
def test_compose_migrates_each_component_as_its_owner_then_runs_it_as_its_app_role(component):
    services = compose()["services"]
    migrate, app = services[f"{component}-migrate"], services[component]
    assert migrate["command"] == ["migrate"]
    assert app["command"] == ["serve"]
    assert app["image"] == migrate["image"] == f"cdp-{component}:dev"
    assert "build" not in app  # built once, by its migration service
    assert app["depends_on"][f"{component}-migrate"] == {"condition": "service_completed_successfully"}
    assert migrate["depends_on"]["db-setup"] == {"condition": "service_completed_successfully"}
    assert service_env(migrate)["CDP_DATABASE_URL"].startswith(f"postgresql://cdp_{component}:")
    assert service_env(app)["CDP_DATABASE_URL"].startswith(f"postgresql://cdp_{component}_app:")
    assert app["healthcheck"]["test"] == ["CMD", "python", "-m", "cdpkit.healthcheck", str(GRPC_PORT[component])]
    assert app["read_only"] is True

    known = config_variables(component)
    required = {name for name, default in known.items() if default == "(required)"}
    for service in (migrate, app):
        variables = service_env(service)
        assert set(variables) <= set(known), sorted(set(variables) - set(known))
        assert required <= set(variables), sorted(required - set(variables))
    assert service_env(app)["CDP_MIGRATE_ON_START"] == "false"
    # Only the gateway is reachable from the host.
    assert ("ports" in app) == (component == "gateway")
    if component == "gateway":
        assert all(port.startswith("127.0.0.1:") for port in app["ports"])
