"""The Model Control Plane kept consistent under crashes and concurrent runs.

- `locks.py`: the promotion lock, a ZenML tag that every client of the store sees (a unique
  name is an atomic test-and-set on any ZenML store, local SQLite or a server's database).
- `store.py`: a fresh local ZenML store created and migrated by one process at a time.
- `versions.py`: which version is `latest` or `production` (only one with a model artifact),
  promotion with its history, rollback.
- `runs.py`: runs whose process died (SIGKILL, power loss) marked failed, with the model
  versions they left without a model.

Imports ZenML but neither TensorFlow nor BentoML: the commands that use it stay fast.
"""
