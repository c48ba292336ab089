"""Plain-Python core: algorithms, parsers, file formats, model calls. Never imports Qt."""
