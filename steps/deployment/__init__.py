"""Deployment: a model version into the BentoML model store, a Bento, its archive (one step)."""
