"""The corpus store (Zarr v3): schema, writer, reader."""

from drrkit.store.errors import StoreError, StoreMismatch
from drrkit.store.reader import Corpus, open_corpus, source_path
from drrkit.store.writer import CorpusWriter, CTEntry, create_or_open

__all__ = ["Corpus", "CorpusWriter", "CTEntry", "StoreError", "StoreMismatch", "create_or_open", "open_corpus", "source_path"]
