"""The revisions of the state store's schema, one file each, numbered (see the package above)."""
