"""Lineage: the unproven fingerprint of a model folder, comparisons, galleries and the one verdict."""
