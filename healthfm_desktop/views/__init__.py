"""QWidgets only: draw, take input, emit intents. No model runtime, DICOM, chemistry or NLP."""
