"""Segment-compatible ingestion: Segment's and RudderStack's libraries send to EventFlow as is."""
