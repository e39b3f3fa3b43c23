"""Disguises a model thief can apply for free, and the checks that the fingerprint sees through them."""
