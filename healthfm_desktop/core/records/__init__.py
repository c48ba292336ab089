"""Clinical notes: spaCy/medspaCy pipeline, entities, assertion context, sections, PHI, export."""
