"""Print the one-dir bundle's size per top-level component (largest first), to compare builds:
`python packaging/bundle_sizes.py dist/healthfm [--save sizes.json] [--before old-sizes.json]`.
Loose shared libraries are grouped by family."""

import argparse
import json
import re
from pathlib import Path


def component(path: Path, internal: Path) -> str:
    top = path.relative_to(internal).parts[0]
    if (internal / top).is_dir():
        return top
    family = re.sub(r"(-[0-9a-f]{8})?\.so.*$|\.cpython-.*$", "", top)
    return re.sub(r"\d+(\.\d+)*$", "", family) + " (loose)"


def sizes_of(bundle: str) -> dict[str, int]:
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
    return sizes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", nargs="?", default="dist/healthfm", help="a bundle folder, or sizes saved by --save")
    parser.add_argument("--save", help="write the sizes as JSON, for a later --before")
    parser.add_argument("--before", help="sizes saved from an earlier build: print both and the change")
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--markdown", action="store_true", help="print the rows as a Markdown table")
    args = parser.parse_args(argv)
    sizes = (json.loads(Path(args.bundle).read_text(encoding="utf-8")) if args.bundle.endswith(".json")
             else sizes_of(args.bundle))
    if args.save:
        Path(args.save).write_text(json.dumps(sizes, indent=1, sort_keys=True), encoding="utf-8")
    before = json.loads(Path(args.before).read_text(encoding="utf-8")) if args.before else None
    mb = 2**20
    names = sorted(set(sizes) | set(before or {}), key=lambda n: -max(sizes.get(n, 0), (before or {}).get(n, 0)))
    shown, rest = names[:args.rows], names[args.rows:]
    if args.markdown:
        _print_markdown(sizes, before, shown, rest)
        return
    for name in shown:
        if before is None:
            print(f"{sizes[name] / mb:8.1f} MB  {name}")
        else:
            old, new = before.get(name, 0), sizes.get(name, 0)
            print(f"{old / mb:8.1f} {new / mb:8.1f} {(new - old) / mb:+8.1f} MB  {name}")
    rest_new = sum(sizes.get(n, 0) for n in rest)
    if before is None:
        print(f"{rest_new / mb:8.1f} MB  {len(rest)} smaller components")
        print(f"{sum(sizes.values()) / mb:8.1f} MB  total")
    else:
        rest_old = sum(before.get(n, 0) for n in rest)
        print(f"{rest_old / mb:8.1f} {rest_new / mb:8.1f} {(rest_new - rest_old) / mb:+8.1f} MB  {len(rest)} smaller components")
        old_total, new_total = sum(before.values()), sum(sizes.values())
        print(f"{old_total / mb:8.1f} {new_total / mb:8.1f} {(new_total - old_total) / mb:+8.1f} MB  total (before, after, change)")


def _print_markdown(sizes: dict[str, int], before: dict[str, int] | None, shown: list[str], rest: list[str]) -> None:
    mb = 2**20
    rows = [(name, [sizes.get(name, 0)] if before is None else [before.get(name, 0), sizes.get(name, 0)]) for name in shown]
    rows.append((f"{len(rest)} smaller components", [sum(sizes.get(n, 0) for n in rest)] if before is None else
                 [sum(before.get(n, 0) for n in rest), sum(sizes.get(n, 0) for n in rest)]))
    rows.append(("**total**", [sum(sizes.values())] if before is None else [sum(before.values()), sum(sizes.values())]))
    if before is None:
        print("| component | MiB |\n|---|---:|")
    else:
        print("| component | before MiB | after MiB | change |\n|---|---:|---:|---:|")
    for name, values in rows:
        cells = [f"{v / mb:.1f}" for v in values]
        if before is not None:
            cells.append(f"{(values[1] - values[0]) / mb:+.1f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
