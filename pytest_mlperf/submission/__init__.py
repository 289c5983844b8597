"""MLPerf submission packages from a results JSON: the official tree, its refusals, and how to reproduce a run."""
