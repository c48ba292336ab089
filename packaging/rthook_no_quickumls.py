"""PyInstaller runtime hook: medspaCy imports QuickUMLS, whose import needs `unidecode` (GPL-2+,
left out of this MIT bundle). HealthFM never builds a QuickUMLS matcher, so the name is bound to a
module that refuses to transliterate instead of silently doing something else."""

import sys
import types


def _unavailable(_text, *args, **kwargs):
    raise RuntimeError("QuickUMLS (UMLS concept mapping) is not part of HealthFM: unidecode is not shipped")


if "unidecode" not in sys.modules:
    _module = types.ModuleType("unidecode", "not shipped with HealthFM (GPL); see packaging/rthook_no_quickumls.py")
    _module.unidecode = _unavailable
    sys.modules["unidecode"] = _module
