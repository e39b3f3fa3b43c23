"""A zoo of derived models: function-preserving re-parametrisations to test the fingerprint against."""
