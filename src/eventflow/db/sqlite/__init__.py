"""SQLite: one writer at a time, partial indexes used only when a query repeats their terms."""
