"""The record_annotator workspace's widgets."""
