"""The regression gate: statistics (pure), comparison of results documents, fingerprints and rendering."""
