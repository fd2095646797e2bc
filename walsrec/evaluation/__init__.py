"""Evaluation: ranking and rating metrics (`metrics`) and the HTML/Markdown reports of a run
(`reports`). `walsrec.training.evaluate_model` evaluates a model against popularity."""
