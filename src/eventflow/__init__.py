"""EventFlow: durable, high-throughput event ingestion and processing."""

__version__ = "0.1.0"
