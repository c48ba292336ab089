"""Patient timelines (labs, vitals), cleaning rules and risk features."""
