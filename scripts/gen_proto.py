"""Generate the Python modules for proto/recsys/v1/*.proto.

    python scripts/gen_proto.py          # (re)write the generated modules in place
    python scripts/gen_proto.py --check  # exit 1 if the committed modules are stale

``proto/`` is a source root: the generated modules form the importable package
``recsys.v1`` (installed from proto/recsys by pyproject.toml), so protoc's own imports work as
they are. (A package named ``proto`` would clash with proto-plus, which Ray pulls in.)
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE_DIR = PROTO_ROOT / "recsys" / "v1"


def _protos() -> list[Path]:
    return sorted(PACKAGE_DIR.glob("*.proto"))


def generate(out_root: Path) -> list[Path]:
    """Run protoc into ``out_root`` (mirroring proto/) and return the files written."""
    from grpc_tools import protoc
    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *[str(p.relative_to(PROTO_ROOT)) for p in _protos()],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    written = sorted((out_root / "recsys" / "v1").glob("*_pb2*.py*"))
    return written


def stale_files() -> list[str]:
    """Names of generated modules that differ from what protoc makes now."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        stale = []
        names = {p.name for p in fresh}
        for path in fresh:
            committed = PACKAGE_DIR / path.name
            if not committed.exists() or committed.read_text() != path.read_text():
                stale.append(path.name)
        for path in PACKAGE_DIR.glob("*_pb2*.py*"):
            if path.name not in names:
                stale.append(path.name)
        return sorted(stale)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if generated modules are stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print("stale generated modules (run python scripts/gen_proto.py):", ", ".join(stale))
            return 1
        print("generated modules are up to date")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        for path in generate(Path(tmp)):
            shutil.copyfile(path, PACKAGE_DIR / path.name)
            print("wrote", (PACKAGE_DIR / path.name).relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
