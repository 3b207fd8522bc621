"""Store-level errors."""


class StoreError(RuntimeError):
    """A corpus store is missing, malformed or of an unsupported schema version."""


class StoreMismatch(StoreError):
    """An existing store was made with a different recipe, geometry or CT list."""
