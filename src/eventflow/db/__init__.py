"""Database access: tables, repositories and migrations."""
