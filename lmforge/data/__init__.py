"""Data: readers for users' corpora and datasets, record schemas, token shards and the loader."""
