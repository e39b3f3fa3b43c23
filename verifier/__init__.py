"""The auditor's side: everything `noseprint verify` checks, each failure with one clear reason."""
