"""SQLite stores (studies, annotations) and atomic autosave."""
