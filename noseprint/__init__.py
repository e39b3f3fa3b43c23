"""noseprint: zero-knowledge-proven HuRef fingerprints of language models.

This package holds only what every room shares: the error type, file helpers,
the data-folder convention, the bundle manifest format and the console script.
The work itself lives in `prover`, `circuits`, `encoder` and `verifier`.
"""

__version__ = "0.1.0"
