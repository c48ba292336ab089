"""Clinical notes: spaCy/medspaCy pipeline, entities, assertion context, sections, PHI, export."""

import importlib.util
import sys


def _defer_import(name: str) -> None:
    """Bind ``name`` to a module that loads on first attribute access (importlib's LazyLoader)."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
        return
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


# medSpaCy imports QuickUMLS, which imports nltk at module level (and with it scipy.stats): about
# 2 s of every start, for UMLS matching HealthFM never builds. Deferred, nltk loads only if
# something uses it.
_defer_import("nltk")
