"""Owner signatures on bundles: Ed25519 keys, DSSE envelopes, in-toto Statements."""
