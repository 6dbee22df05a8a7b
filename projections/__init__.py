"""Read models and query services. Filled in by the projections issue."""
