"""The registry: tables, the RFC 6962 log and its checkpoints, search, audit, the HTTP API and pages.

Its database and web stack is the optional `registry` extra (`pip install 'noseprint[registry]'`)."""
