"""The state store's one error, apart from `db` so that the modules `db` uses can raise it."""


class StoreError(Exception):
    """The state store cannot be used (read-only, full disk, unreachable): cdrsync must stop."""
