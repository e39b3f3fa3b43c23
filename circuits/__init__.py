"""EZKL circuits: ONNX export of the fingerprint graph, settings, SRS store, keys, proofs."""
