"""Slim a bundle's shared libraries: strip the symbol tables wheels still carry and libpython's debug
info, close the zero-filled holes patchelf leaves, keep the ICU data an English UI uses:
`python packaging/strip_bundle.py dist/healthfm`."""

import re
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

# Qt and the interpreter keep their symbol tables; so does OpenBLAS: with scipy's copy stripped, the GUI
# start printed ~90 shiboken signature-parser warnings (found by bisection; PyInstaller's
# strip=True, which strips everything, showed the same)
KEEP = ("PySide6/", "shiboken6/", "libpython")
ICU = "PySide6/Qt/lib/libicu"  # Qt's ICU carries its symbol tables (1.3 MB); nothing reads them
PAGE = 0x1000
PT_LOAD, SHT_NOBITS = 1, 8


def _elf_with_symtab(path: Path) -> bool:
    with path.open("rb") as handle:
        if handle.read(4) != b"\x7fELF":
            return False
    sections = subprocess.run(["readelf", "-S", "-W", str(path)], capture_output=True, text=True, check=True).stdout
    return " .symtab " in sections


def compact_elf(path: Path) -> int:
    """Close the zero-filled holes that patchelf leaves between the LOAD segments of a wheel's
    vendored libraries (RDKit's cairo, xcb, freetype...: each segment it added starts on a 2 MiB
    boundary of the file): every block moves down to the next offset congruent to its old one
    modulo the 4 KiB page, and PT_LOAD alignment becomes 4 KiB. Addresses and contents do not
    change. Returns the bytes saved (0: the file is left as it was)."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:  # 64-bit little-endian only
        return 0
    (e_phoff, e_shoff) = struct.unpack_from("<QQ", data, 0x20)
    e_phentsize, e_phnum, e_shentsize, e_shnum = struct.unpack_from("<HHHH", data, 0x36)
    phdrs = [list(struct.unpack_from("<IIQQQQQQ", data, e_phoff + i * e_phentsize)) for i in range(e_phnum)]
    shdrs = [list(struct.unpack_from("<IIQQQQIIQQ", data, e_shoff + i * e_shentsize)) for i in range(e_shnum)]
    loads = [p for p in phdrs if p[0] == PT_LOAD]
    if not loads or any(p[7] < PAGE or (p[3] - p[2]) % PAGE for p in loads):
        return 0
    # every byte range the file must keep: segments, section contents, both header tables
    ranges = [(0, 0x40), (e_phoff, e_phoff + e_phnum * e_phentsize), (e_shoff, e_shoff + e_shnum * e_shentsize)]
    ranges += [(p[2], p[2] + p[5]) for p in loads if p[5]]
    ranges += [(s[4], s[4] + s[5]) for s in shdrs if s[1] != SHT_NOBITS and s[5]]
    blocks: list[list[int]] = []
    for start, end in sorted(ranges):
        if blocks and start <= blocks[-1][1]:
            blocks[-1][1] = max(blocks[-1][1], end)
        else:
            blocks.append([start, end])
    # each block keeps its offset modulo the page (so segments stay congruent to their addresses)
    moves = []
    cursor = 0
    for start, end in blocks:
        new_start = cursor + ((start - cursor) % PAGE)
        moves.append((start, end, new_start - start))
        cursor = new_start + (end - start)
    if len(data) - cursor < 64 * 1024:
        return 0

    def moved(offset: int) -> int:
        delta = 0
        for start, end, shift in moves:
            if offset < start:
                break
            delta = shift
        return offset + delta

    out = bytearray(cursor)
    for start, end, shift in moves:
        out[start + shift:end + shift] = data[start:end]
    struct.pack_into("<QQ", out, 0x20, moved(e_phoff), moved(e_shoff))
    new_phoff, new_shoff = moved(e_phoff), moved(e_shoff)
    for i, p in enumerate(phdrs):
        offset = moved(p[2])
        if p[0] == PT_LOAD:
            offset += (p[2] - offset) % PAGE  # (a segment with no file bytes too)
            p[7] = PAGE
        p[2] = offset
        struct.pack_into("<IIQQQQQQ", out, new_phoff + i * e_phentsize, *p)
    for i, s in enumerate(shdrs):
        s[4] = moved(s[4]) if s[5] or s[4] else 0
        struct.pack_into("<IIQQQQIIQQ", out, new_shoff + i * e_shentsize, *s)
    path.write_bytes(bytes(out))
    return len(data) - len(out)


# ICU's common data inside Qt's libicudata (about 3,900 items, 30 MB): the UI is English, so other
# languages' locale data, the multi-byte (CJK) converters, the word-break dictionaries for CJK and
# South-East Asian scripts and the transliterators go. Normalisation, root collation, time zones,
# single-byte code pages and the root and English locale data stay; ICU falls back to root for any
# other locale (Qt's own QLocale formats do not come from ICU).
_LOCALE = re.compile(r"^[a-z]{2,3}(_[A-Za-z0-9]+)*$")


# ICU's number, currency, unit, language and region names and spell-out rules, and the Unicode
# character names: Qt takes all of these from its own CLDR tables, not from ICU
_QT_OWN = ("translit", "unit", "curr", "lang", "region", "rbnf")


def _kept_icu_item(name: str, size: int) -> bool:
    parts = name.split("/")[1:]  # after "icudt73l/"
    stem, _, suffix = parts[-1].rpartition(".")
    if (suffix == "dict" or parts[0] in _QT_OWN or parts[-1] == "unames.icu"
            or (suffix == "cnv" and size >= 64 * 1024)):
        return False
    if suffix == "res" and _LOCALE.match(stem):
        return stem == "en" or stem.startswith("en_")
    return True


def subset_icu_data(blob: bytes) -> bytes:
    """An ICU common-data package (header, table of contents sorted by name, 16-byte aligned
    items) with only the kept items."""
    toc = struct.unpack_from("<H", blob, 0)[0]  # the header's size
    count = struct.unpack_from("<I", blob, toc)[0]
    entries = []
    for i in range(count):
        name_at, data_at = struct.unpack_from("<II", blob, toc + 4 + 8 * i)
        entries.append((blob[toc + name_at:blob.index(b"\0", toc + name_at)].decode("ascii"), data_at))
    starts = sorted(at for _, at in entries) + [len(blob) - toc]
    end_of = {at: starts[i + 1] for i, at in enumerate(starts[:-1])}
    kept = [(name, blob[toc + at:toc + end_of[at]]) for name, at in entries
            if _kept_icu_item(name, end_of[at] - at)]
    names = b"".join(name.encode("ascii") + b"\0" for name, _ in kept)
    table_size = 4 + 8 * len(kept)
    data_start = (table_size + len(names) + 15) // 16 * 16
    table, body, name_at = bytearray(struct.pack("<I", len(kept))), bytearray(), table_size
    for name, item in kept:
        table += struct.pack("<II", name_at, data_start + len(body))
        name_at += len(name) + 1
        body += item + b"\0" * (-len(item) % 16)
    return blob[:toc] + bytes(table) + names + b"\0" * (data_start - table_size - len(names)) + bytes(body)


def slim_icu_data(library: Path) -> int:
    """Rebuild Qt's libicudata.so.NN with the subset of its data (binutils: objcopy, ld). Returns
    the bytes saved."""
    version = library.name.split(".so.")[-1]
    before = library.stat().st_size
    with tempfile.TemporaryDirectory() as work:
        data = Path(work) / f"icudt{version}l.dat"
        subprocess.run(["objcopy", "-O", "binary", "--only-section=.rodata", str(library), str(data)], check=True)
        data.write_bytes(subset_icu_data(data.read_bytes()))
        obj = Path(work) / "icudata.o"
        subprocess.run(["objcopy", "-I", "binary", "-O", "elf64-x86-64", "-B", "i386:x86-64",
                        "--rename-section", ".data=.rodata,alloc,load,readonly,data,contents",
                        "--set-section-alignment", ".rodata=16", data.name, str(obj)], check=True, cwd=work)
        subprocess.run(["ld", "-shared", "-soname", library.name, "-z", "noexecstack",
                        f"--defsym=icudt{version}_dat=_binary_icudt{version}l_dat_start", "-o", str(library), str(obj)],
                       check=True)
    return before - library.stat().st_size


def main(bundle: str) -> None:
    internal = Path(bundle) / "_internal"
    saved = debug = holes = 0
    for path in sorted(internal.rglob("*.so*")):
        relative = path.relative_to(internal).as_posix()
        if path.is_symlink() or not path.is_file():
            continue
        before = path.stat().st_size
        if relative.startswith("libpython"):
            # its DWARF and static symbols (the bootloader and extensions use the dynamic ones)
            subprocess.run(["strip", "--strip-unneeded", str(path)], check=True)
            debug += before - path.stat().st_size
        elif (not (relative.startswith(KEEP) or "openblas" in path.name) or relative.startswith(ICU)) and _elf_with_symtab(path):
            subprocess.run(["strip", "--strip-unneeded", str(path)], check=True)
            saved += before - path.stat().st_size
        holes += compact_elf(path)
    icu = sum(slim_icu_data(path) for path in sorted(internal.glob("PySide6/Qt/lib/libicudata.so.*")) if not path.is_symlink())
    print(f"strip_bundle: {saved / 2**20:.1f} MB of symbol tables, {debug / 2**20:.1f} MB of libpython's debug "
          f"info and symbols, {holes / 2**20:.1f} MB of patchelf's zero padding and {icu / 2**20:.1f} MB of ICU locale data removed")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "dist/healthfm")
