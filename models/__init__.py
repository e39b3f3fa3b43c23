"""Reading models: checkpoints, architecture adapters, token selection, HuRef invariants, the demo model."""
