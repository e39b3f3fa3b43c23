"""The owner's side: read a checkpoint, select tokens, compute invariants, commit, prove, write the bundle."""
