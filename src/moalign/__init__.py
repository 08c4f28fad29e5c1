"""moalign."""
