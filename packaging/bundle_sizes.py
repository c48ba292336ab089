"""Print the one-dir bundle's size per top-level component (largest first), to compare builds:
`python packaging/bundle_sizes.py dist/healthfm`. Loose shared libraries are grouped by family."""

import re
import sys
from pathlib import Path


def component(path: Path, internal: Path) -> str:
    top = path.relative_to(internal).parts[0]
    if (internal / top).is_dir():
        return top
    family = re.sub(r"(-[0-9a-f]{8})?\.so.*$|\.cpython-.*$", "", top)
    return re.sub(r"\d+(\.\d+)*$", "", family) + " (loose)"


def main(bundle: str) -> None:
    root = Path(bundle)
    internal = root / "_internal"
    sizes: dict[str, int] = {}
    for path in internal.rglob("*"):
        if path.is_file() and not path.is_symlink():
            key = component(path, internal)
            sizes[key] = sizes.get(key, 0) + path.stat().st_size
    for path in root.iterdir():
        if path.is_file():
            sizes[f"{path.name} (executable + Python archive)"] = path.stat().st_size
    total = sum(sizes.values())
    for name, size in sorted(sizes.items(), key=lambda item: -item[1])[:40]:
        print(f"{size / 2**20:8.1f} MB  {name}")
    rest = sorted(sizes.values(), reverse=True)[40:]
    print(f"{sum(rest) / 2**20:8.1f} MB  {len(rest)} smaller components")
    print(f"{total / 2**20:8.1f} MB  total")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "dist/healthfm")
