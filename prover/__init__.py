"""The owner's side: `noseprint prove` as plan -> prove -> write (see `prover/pipeline.py`)."""
