"""Brokers carry "this event is ready" hints from writers to workers."""
