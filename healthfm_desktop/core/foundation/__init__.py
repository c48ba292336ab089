"""Foundation encoders (image, text, molecule) and adaptation of small heads on their
embeddings to the user's own labels, all on this machine."""
