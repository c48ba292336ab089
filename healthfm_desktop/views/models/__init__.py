"""The Models window: the registry's models, training a head on the user's labels, running it, export/import."""
