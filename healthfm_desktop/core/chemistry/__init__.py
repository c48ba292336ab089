"""Molecule I/O, properties, filters and alerts, fingerprints, search, analogue generation."""
