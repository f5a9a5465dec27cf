"""The onezone storage node: object index and data files, chunk sealing, replication, and the
bucket-key cache. Entry point: ``node.main`` (``onezone node --config FILE``)."""
