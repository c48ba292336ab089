"""Limits every patient reader applies, so a CSV, a record file and a FHIR Bundle accept the same."""

MAX_MINUTES = 366 * 24 * 60  # a stay longer than a year is a unit error (seconds or epoch times)
MAX_ID_LENGTH = 64
