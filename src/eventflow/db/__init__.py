"""Database access: tables, migrations, and the stores (``stores.build_stores``)."""
