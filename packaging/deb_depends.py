"""Check that a .deb's Depends names the Debian package of every system library the bundle links:
`python packaging/deb_depends.py dist/healthfm build/deb/<name>/DEBIAN/control` (exit 1 lists the gaps)."""

import functools
import os
import re
import subprocess
import sys
from pathlib import Path


@functools.lru_cache(maxsize=None)
def debian_package(source: str) -> str | None:
    """The Debian package that installed a system library on this machine, or None."""
    if not source.startswith(("/lib/", "/usr/lib/", "/lib64/")) or "libpython" in source:
        return None
    for path in dict.fromkeys((source, os.path.realpath(source))):
        # merged /usr: dpkg may know the file under either prefix
        for candidate in (path, path.replace("/usr/lib/", "/lib/", 1), path.replace("/lib/", "/usr/lib/", 1)):
            try:
                found = subprocess.run(["dpkg-query", "-S", candidate], capture_output=True, text=True)
            except OSError:  # not a Debian system (the spec then bundles every library)
                return None
            if found.returncode == 0:
                return found.stdout.split(":")[0].strip()
    return None


def needed(path: Path) -> list[str]:
    """The sonames an ELF file names as NEEDED ([] for a file that is not ELF)."""
    with path.open("rb") as handle:
        if handle.read(4) != b"\x7fELF":
            return []
    dynamic = subprocess.run(["readelf", "-d", "-W", str(path)], capture_output=True, text=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic)


def debian_name(soname: str) -> str:
    """The package name Debian's library policy gives a soname: libfoo.so.3 -> libfoo3,
    libfoo2.so.1 -> libfoo2-1 (used for a library this machine does not have)."""
    match = re.fullmatch(r"(.+?)\.so\.([0-9]+).*", soname)
    if not match:
        return soname.lower()
    name, version = match.group(1).lower().replace("_", "-"), match.group(2)
    return f"{name}-{version}" if name[-1].isdigit() else f"{name}{version}"


def declared(control: str) -> set[str]:
    """Package names in a control file's Depends (versions dropped, every alternative counted)."""
    match = re.search(r"^Depends:(.*(?:\n .*)*)", control, re.MULTILINE)
    if not match:
        return set()
    return {re.sub(r"\s*\(.*?\)|:any", "", alt).strip() for alt in re.split(r"[,|]", match.group(1)) if alt.strip()}


@functools.lru_cache(maxsize=1)
def system_libraries() -> dict[str, str]:
    """soname -> path of the x86-64 libraries the dynamic linker knows (ldconfig's cache)."""
    listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    found: dict[str, str] = {}
    for line in listing.splitlines():
        match = re.match(r"\s*(\S+) \(([^)]*)\) => (\S+)", line)
        if match and "x86-64" in match.group(2):
            found.setdefault(match.group(1), match.group(3))
    return found


def gaps(bundle: Path, packages: set[str]) -> dict[str, tuple[str, list[str]]]:
    """Sonames the bundle's ELF files need, neither in the bundle nor covered by ``packages``:
    soname -> (the package that would provide it, the bundle files that need it)."""
    files = [p for p in bundle.rglob("*") if p.is_file() and not p.is_symlink()]
    # a name in the bundle counts only when it resolves (the spec drops files a symlink may still name)
    inside = {p.name for p in bundle.rglob("*") if p.exists()}
    users: dict[str, list[str]] = {}
    for path in files:
        for soname in needed(path):
            if soname not in inside:
                users.setdefault(soname, []).append(str(path.relative_to(bundle)))
    system = system_libraries()
    missing = {}
    for soname, who in sorted(users.items()):
        package = debian_package(system[soname]) if soname in system else None
        package = package or debian_name(soname)
        if package not in packages:
            missing[soname] = (package, sorted(who))
    return missing


def main(argv: list[str] | None = None) -> int:
    bundle, control = (argv if argv is not None else sys.argv[1:])
    missing = gaps(Path(bundle), declared(Path(control).read_text(encoding="utf-8")))
    for soname, (package, who) in missing.items():
        print(f"deb_depends: {soname} (package {package}) is needed by {', '.join(who[:3])}"
              f"{f' and {len(who) - 3} more' if len(who) > 3 else ''} but not in Depends", file=sys.stderr)
    if missing:
        return 1
    print("deb_depends: Depends covers every system library the bundle links")
    return 0


if __name__ == "__main__":
    sys.exit(main())
