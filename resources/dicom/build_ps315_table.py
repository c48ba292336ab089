"""Rebuild ps315_table_e1_1.json: DICOM PS3.15 Table E.1-1 (Basic Profile column) plus, for the
attributes whose action depends on IOD conformance (X/Z, X/D, X/Z/D, Z/D, X/Z/U*), the attribute
type (1, 1C, 2, 2C) they have in each IOD and at which sequence path.

Inputs (not in the repository; see README.md):
  --table  confidentiality_profile_attributes.json of innolitics/dicom-standard (MIT), which is
           Table E.1-1 of the DICOM standard parsed into JSON
  the IOD/module/attribute-type maps shipped inside the installed highdicom package (MIT),
  themselves generated from the same innolitics parse of PS3.3.

    python resources/dicom/build_ps315_table.py --table confidentiality_profile_attributes.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from pydicom.datadict import keyword_for_tag

HERE = Path(__file__).resolve().parent
_TYPE_RANK = {"1": 0, "1C": 1, "2": 2, "2C": 3, "3": 4}
_SIMPLE = {"X", "Z", "D", "U", "K", "C"}


def _tag_pattern(text: str) -> str | None:
    """'(0008,0050)' -> '00080050'; repeating groups keep their x: '(50XX,XXXX)' -> '50xxxxxx'."""
    inner = text.strip().strip("()").replace(",", "").lower()
    if len(inner) != 8:
        return None
    return inner


def build(table_path: Path) -> dict:
    from highdicom._standard_utils import get_iod_module_map, get_module_attribute_map, get_sop_class_iod_map

    rows = json.loads(table_path.read_text())
    attributes = []
    conditional = set()
    for row in rows:
        action = row["basicProfile"].strip()
        pattern = _tag_pattern(row["tag"])
        if pattern is None:  # "(GGGG,EEEE) WHERE GGGG IS ODD": private attributes
            attributes.append({"tag": "private", "name": row["name"], "action": action})
            continue
        keyword = ""
        if "x" not in pattern:
            keyword = keyword_for_tag(int(pattern, 16)) or ""
        attributes.append({"tag": pattern, "keyword": keyword, "name": row["name"], "action": action})
        if action not in _SIMPLE and keyword:
            conditional.add(keyword)

    modules = get_module_attribute_map()
    iods = sorted(get_iod_module_map())
    iod_index = {name: i for i, name in enumerate(iods)}
    strongest: dict[str, dict[str, dict[int, str]]] = defaultdict(lambda: defaultdict(dict))
    for iod, module_list in get_iod_module_map().items():
        for module in module_list:
            for attribute in modules.get(module["key"], []):
                if attribute["keyword"] not in conditional:
                    continue
                path = "/".join(attribute["path"])
                known = strongest[attribute["keyword"]][path]
                old = known.get(iod_index[iod])
                if old is None or _TYPE_RANK[attribute["type"]] < _TYPE_RANK[old]:
                    known[iod_index[iod]] = attribute["type"]
    types: dict[str, dict[str, dict[str, list[int]]]] = {}
    for keyword, paths in sorted(strongest.items()):
        for path, by_iod in sorted(paths.items()):
            grouped: dict[str, list[int]] = defaultdict(list)
            for iod, kind in sorted(by_iod.items()):
                if kind != "3":
                    grouped[kind].append(iod)
            if grouped:
                types.setdefault(keyword, {})[path] = dict(grouped)
    return {
        "source": "DICOM PS3.15 Table E.1-1, Basic Profile column, as parsed by innolitics/dicom-standard "
                  "(standard/confidentiality_profile_attributes.json, commit 7f4749d, DICOM 2024e; MIT). "
                  "Attribute types per IOD from highdicom 0.28.2's _standard maps (MIT).",
        "attributes": attributes,
        "iods": iods,
        "sop_class_iod": get_sop_class_iod_map(),
        "conditional_types": types,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--table", required=True, type=Path)
    parser.add_argument("--out", type=Path, default=HERE / "ps315_table_e1_1.json")
    args = parser.parse_args()
    data = build(args.table)
    args.out.write_text(json.dumps(data, separators=(",", ":"), sort_keys=False) + "\n")
    print(f"{len(data['attributes'])} rows, {len(data['conditional_types'])} conditional attributes -> {args.out}")


if __name__ == "__main__":
    main()
