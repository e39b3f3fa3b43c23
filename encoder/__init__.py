"""The fingerprint networks: the invariant encoder (terms -> z) and the image generator (z -> picture)."""
