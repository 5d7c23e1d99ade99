"""Where the catalogue's PostgreSQL database and Redis are, from the
environment (test/t/016_sqlalchemy.pl sets them)."""
import os

from sqlalchemy.engine import URL

DATABASE_URL = URL.create(
    "postgresql+psycopg2",
    username=os.environ.get("CATALOG_DB_USER", "catalog_app"),
    host=os.environ.get("CATALOG_DB_HOST"),  # a host name or a Unix socket directory
    port=int(os.environ["CATALOG_DB_PORT"]) if "CATALOG_DB_PORT" in os.environ else None,
    database=os.environ.get("CATALOG_DB_NAME", "catalog"),
)
# The Redis database cachebust.redis_url names: the worker deletes there.
REDIS_URL = os.environ.get("CATALOG_REDIS_URL", "redis://127.0.0.1:6379/0")
