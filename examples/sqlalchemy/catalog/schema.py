"""The tables and their cachebust triggers: `python3 -m catalog.schema`.

Run by the role that owns the tables, which needs EXECUTE on
cachebust.invalidate() (granted by a superuser). A project using Alembic
puts the watch() in a migration's upgrade() with op.execute(), and
cachebust.unwatch('products') in its downgrade().
"""
from sqlalchemy import text

from . import db
from .models import Base

# Every INSERT, UPDATE, DELETE and TRUNCATE of products invalidates
# product:<id> and the tag set of the category (of both on a move).
# SQLAlchemy's UPDATE writes only the attributes that changed, so no
# columns => list is needed to keep unchanged saves quiet.
WATCH_PRODUCTS = """
SELECT cachebust.watch('products',
         keys => ARRAY['product:{id}'],
         tags => ARRAY['category:{category_id}'])
WHERE NOT EXISTS (SELECT FROM cachebust.watches WHERE "table" = 'products'::regclass)"""


def create_schema():
    with db.engine.begin() as connection:
        Base.metadata.create_all(connection)
        connection.execute(text(WATCH_PRODUCTS))


if __name__ == "__main__":
    create_schema()
