"""BentoML serving: packaging, the HTTP service and its fold-in."""
