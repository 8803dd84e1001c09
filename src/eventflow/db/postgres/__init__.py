"""PostgreSQL through asyncpg: COPY, array parameters, autocommit single statements."""
