"""Deployment steps: a model version into the BentoML model store, then a Bento."""
