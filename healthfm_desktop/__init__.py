"""HealthFM Desktop: an offline medical AI workstation."""

__version__ = "0.1.0"
