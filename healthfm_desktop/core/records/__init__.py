"""Clinical notes: spaCy/medspaCy pipeline, entities, assertion context, sections, PHI, export."""

import importlib.abc
import importlib.util
import sys
import threading
import types

_LOAD_LOCK = threading.RLock()
_LOADING: set[str] = set()


class _DeferredModule(types.ModuleType):
    """A module whose code runs at the first use of a name it defines or of a submodule (which
    reads ``__path__``, kept back until then). A bare ``import name`` does not run it, unlike
    importlib's LazyLoader on Python 3.11, which runs as soon as another module says so."""

    def __getattr__(self, attr):
        name = self.__spec__.name
        with _LOAD_LOCK:
            if name in _LOADING:  # its own code, while it runs: as any partly initialised module
                raise AttributeError(f"partially initialised module {name!r} has no attribute {attr!r}")
            if type(self) is _DeferredModule:
                _LOADING.add(name)
                if self.__spec__.submodule_search_locations is not None:
                    self.__path__ = self.__spec__.submodule_search_locations
                try:
                    self.__spec__.loader.exec_module(self)
                finally:
                    _LOADING.discard(name)
                    self.__class__ = types.ModuleType
        return types.ModuleType.__getattribute__(self, attr)


def _defer_import(name: str) -> None:
    """Bind ``name`` to a module that runs on first use of one of its names."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
        return
    module = importlib.util.module_from_spec(spec)
    module.__dict__.pop("__path__", None)
    module.__class__ = _DeferredModule
    sys.modules[name] = module


class _ImportWithout(importlib.abc.MetaPathFinder):
    """Runs ``module``, when something first imports it, as if ``absent`` were not installed
    (``import absent`` raises ImportError meanwhile); nothing is imported before that."""

    def __init__(self, module: str, absent: str):
        self.module, self.absent = module, absent

    def find_spec(self, name, path=None, target=None):
        if name != self.module:
            return None
        sys.meta_path.remove(self)  # once; the finders after it find the module itself
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module") or self.absent in sys.modules:
            return spec
        run, absent = spec.loader.exec_module, self.absent

        def exec_module(module):
            sys.modules[absent] = None
            try:
                run(module)
            finally:
                if absent in sys.modules and sys.modules[absent] is None:
                    del sys.modules[absent]

        spec.loader.exec_module = exec_module  # this spec's own loader instance
        return spec


# medSpaCy imports QuickUMLS, which imports nltk at module level (and with it scipy.stats and
# scikit-learn): about 2 s of every start, for UMLS matching HealthFM never builds. Deferred,
# nltk runs only if something uses it.
_defer_import("nltk")
# spaCy imports thinc, whose thinc.compat imports torch whenever it is installed (the training
# extra installs it): about 2/3 of spaCy's import time, for PyTorch layers no HealthFM pipeline
# has. thinc then runs with has_torch False; torch itself stays importable, and a process that
# imported torch before spaCy keeps thinc's torch support.
if not any(isinstance(finder, _ImportWithout) for finder in sys.meta_path):
    sys.meta_path.insert(0, _ImportWithout("thinc.compat", "torch"))
