"""Imported by the describe pool's fork server (core/processes.py preload): the alert catalogs
are built there once, and every worker forks with them built, a replaced one included."""

from healthfm_desktop.core.chemistry.properties import _warm_worker

_warm_worker()
