"""Generate the Python code for protos/cdp/** into libs/cdp-protos (or check it is current).

    python tools/protogen.py           # regenerate in place
    python tools/protogen.py --check   # exit 1 when the committed code differs from a fresh run

Only our own packages are generated; google.api / google.protobuf classes come from the
googleapis-common-protos and protobuf packages at run time.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE_ROOT = ROOT / "libs" / "cdp-protos"
GENERATED_TOP = "cdp"


def generate(out_dir: Path) -> None:
    sources = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / GENERATED_TOP).rglob("*.proto"))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # Regular packages (not namespace ones) so that setuptools and type checkers find them.
    for directory in [out_dir / GENERATED_TOP, *(out_dir / GENERATED_TOP).rglob("*")]:
        if directory.is_dir() and directory.name != "__pycache__":
            (directory / "__init__.py").touch()


def _tree(root: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(root)): p
        for p in (root / GENERATED_TOP).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        fresh_root = Path(tmp)
        generate(fresh_root)
        fresh, committed = _tree(fresh_root), _tree(PACKAGE_ROOT)
        stale = sorted(
            name
            for name in fresh.keys() | committed.keys()
            if name not in fresh
            or name not in committed
            or not filecmp.cmp(fresh[name], committed[name], shallow=False)
        )
    if stale:
        print("generated protobuf code is out of date; run `make protos`:", *stale, sep="\n  ")
        return 1
    print(f"generated protobuf code is current ({len(fresh)} files)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    if parser.parse_args().check:
        return check()
    target = PACKAGE_ROOT / GENERATED_TOP
    if target.exists():
        for path in sorted(target.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
    generate(PACKAGE_ROOT)
    print(f"generated into {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
