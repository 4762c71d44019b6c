"""HTTP plumbing shared by every domain: errors, auth, idempotent writes, OpenAPI."""
