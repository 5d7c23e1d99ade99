"""The recipe of ../README.md, against a real PostgreSQL with cachebust and a
real Redis (run by test/t/016_sqlalchemy.pl): `python3 -m unittest -v catalog.tests`.

Each test reads Redis directly to see what cachebust deleted, after the
wait the recipe prescribes. The first test shows what happens without the
trigger -- the stale read every other test would see if cachebust did not
do its work -- so none of them can pass by accident.
"""
import unittest

from dogpile.cache.util import sha1_mangle_key
from sqlalchemy import create_engine, delete, text, update
from sqlalchemy.pool import NullPool

from . import db, settings
from .caching import (KeyNameMismatch, category_products_key, category_tag, check_key_names,
                      get_category_products, get_product, make_catalog_region, redis_client, region)
from .models import Category, Product
from .schema import WATCH_PRODUCTS


def in_redis(key):
    """Whether Redis holds the entry the region calls `key`."""
    return redis_client().exists(region.key_mangler(key)) == 1


class CatalogTests(unittest.TestCase):

    def setUp(self):
        with db.Session() as session, session.begin():
            session.execute(delete(Product))
            session.execute(delete(Category))
        # (The deletes invalidate too; the hook waited for them.) Only this
        # application's names: FLUSHDB would empty the whole Redis database.
        redis = redis_client()
        for name in redis.scan_iter(match="catalog:*"):
            redis.delete(name)
        with db.Session() as session, session.begin():
            self.tools = Category(name="Tools")
            self.toys = Category(name="Toys")
            session.add_all([self.tools, self.toys])
            session.flush()
            self.hammer = Product(category_id=self.tools.id, name="Hammer", price=12)
            self.saw = Product(category_id=self.tools.id, name="Saw", price=20)
            self.kite = Product(category_id=self.toys.id, name="Kite", price=9)
            session.add_all([self.hammer, self.saw, self.kite])

    def rename(self, product, name):
        with db.Session() as session, session.begin():
            session.get(Product, product.id).name = name

    # ---- the control: without the trigger the cache stays stale

    def test_without_the_trigger_a_commit_leaves_the_cache_stale(self):
        self.assertEqual(get_product(self.hammer.id)["name"], "Hammer")
        with db.engine.begin() as connection:
            connection.execute(text("SELECT cachebust.unwatch('products')"))
        try:
            self.rename(self.hammer, "Claw hammer")
            self.assertEqual(get_product(self.hammer.id)["name"], "Hammer", "a stale read")
        finally:
            with db.engine.begin() as connection:
                connection.execute(text(WATCH_PRODUCTS))
        self.rename(self.hammer, "Club hammer")
        self.assertEqual(get_product(self.hammer.id)["name"], "Club hammer", "with the trigger: none")

    # ---- names

    def test_key_names_match_cachebust(self):
        check_key_names()
        get_product(self.hammer.id)
        with db.engine.connect() as connection:
            full_key = connection.execute(text("SELECT cachebust.full_key(:k)"),
                                          {"k": f"product:{self.hammer.id}"}).scalar_one()
        self.assertEqual(full_key, f"catalog:product:{self.hammer.id}")
        self.assertEqual(redis_client().exists(full_key), 1, "get_product() cached under that name")

    def test_a_hashing_key_mangler_is_refused(self):
        hashed = make_catalog_region(key_mangler=lambda key: "catalog:" + sha1_mangle_key(key.encode()))
        with self.assertRaisesRegex(KeyNameMismatch, r"as 'catalog:[0-9a-f]{40}', cachebust deletes 'catalog:product:probe-"):
            check_key_names(hashed)

    # ---- writes through the ORM, waited for by the after_commit hook

    def test_an_orm_change_is_read_back_after_commit(self):
        self.assertEqual(get_product(self.hammer.id)["name"], "Hammer")
        self.assertEqual(get_product(self.saw.id)["name"], "Saw")
        self.rename(self.hammer, "Claw hammer")
        # No wait here: the session's after_commit hook ran barrier().
        self.assertFalse(in_redis(f"product:{self.hammer.id}"))
        self.assertEqual(get_product(self.hammer.id)["name"], "Claw hammer")
        self.assertTrue(in_redis(f"product:{self.saw.id}"), "another product's entry is kept")

    def test_an_update_statement_is_waited_for_too(self):
        get_product(self.hammer.id)
        get_product(self.kite.id)
        with db.Session() as session, session.begin():
            session.execute(update(Product).where(Product.category_id == self.tools.id).values(price=1))
        self.assertEqual(get_product(self.hammer.id)["price"], "1.00")
        self.assertTrue(in_redis(f"product:{self.kite.id}"), "the other category's product is kept")

    def test_an_insert_invalidates_the_category_lists(self):
        self.assertEqual([p["name"] for p in get_category_products(self.tools.id)], ["Hammer", "Saw"])
        get_category_products(self.tools.id, "price")
        get_category_products(self.toys.id)
        tag_set = "catalog:tag:" + category_tag(self.tools.id)
        self.assertEqual(redis_client().smembers(tag_set), {
            b"catalog:" + category_products_key(self.tools.id, "name").encode(),
            b"catalog:" + category_products_key(self.tools.id, "price").encode()})
        list_name = region.key_mangler(category_products_key(self.tools.id, "name"))
        self.assertGreater(redis_client().ttl(tag_set), redis_client().ttl(list_name),
                           "the tag set expires after its members")
        with db.Session() as session, session.begin():
            session.add(Product(category_id=self.tools.id, name="Axe", price=30))
        self.assertFalse(in_redis(category_products_key(self.tools.id, "name")))
        self.assertFalse(in_redis(category_products_key(self.tools.id, "price")))
        self.assertEqual(redis_client().exists(tag_set), 0, "the tag set went with its members")
        self.assertTrue(in_redis(category_products_key(self.toys.id)), "another category's list is kept")
        self.assertEqual([p["name"] for p in get_category_products(self.tools.id)], ["Axe", "Hammer", "Saw"])

    def test_moving_a_product_invalidates_both_lists(self):
        get_category_products(self.tools.id)
        get_category_products(self.toys.id)
        with db.Session() as session, session.begin():
            session.get(Product, self.saw.id).category_id = self.toys.id
        self.assertEqual([p["name"] for p in get_category_products(self.tools.id)], ["Hammer"])
        self.assertEqual([p["name"] for p in get_category_products(self.toys.id)], ["Kite", "Saw"])

    def test_a_delete_invalidates_the_product_and_its_list(self):
        get_product(self.kite.id)
        get_category_products(self.toys.id)
        with db.Session() as session, session.begin():
            session.delete(session.get(Product, self.kite.id))
        self.assertIsNone(get_product(self.kite.id))
        self.assertEqual(get_category_products(self.toys.id), [])

    def test_a_rolled_back_session_invalidates_nothing(self):
        get_product(self.hammer.id)
        with db.Session() as session:
            session.get(Product, self.hammer.id).name = "Never"
            session.flush()
            pending = session.execute(text("SELECT kind, target FROM cachebust.pending() ORDER BY 1, 2")).all()
            self.assertEqual([tuple(row) for row in pending],
                             [("key", f"catalog:product:{self.hammer.id}"),
                              ("tag", f"catalog:tag:category:{self.tools.id}")])
            session.rollback()
        self.assertTrue(db.wait_for_invalidations())
        self.assertTrue(in_redis(f"product:{self.hammer.id}"))
        self.assertEqual(get_product(self.hammer.id)["name"], "Hammer")

    # ---- the other place to wait: the committing connection itself

    # SQLAlchemy's psycopg2 dialect logs PostgreSQL's NOTICEs to this logger,
    # at INFO (and takes them off the DBAPI connection).
    NOTICES = "sqlalchemy.dialects.postgresql"

    def test_wait_for_delivery_on_the_connection_that_committed(self):
        get_product(self.hammer.id)
        with db.engine.connect() as connection:
            # The Session runs on this connection, which stays checked out
            # across the commit and the wait (the after_commit hook's
            # barrier() is not needed here, nor harmful).
            with db.Session(bind=connection) as session:
                session.get(Product, self.hammer.id).name = "Sledgehammer"
                session.commit()
            with self.assertNoLogs(self.NOTICES, level="INFO"):
                waited = connection.execute(text("SELECT cachebust.wait_for_delivery(5000)")).scalar_one()
        self.assertTrue(waited)
        self.assertEqual(get_product(self.hammer.id)["name"], "Sledgehammer")

    def test_wait_for_delivery_on_another_connection_has_nothing_to_wait_for(self):
        # The trap barrier() avoids: the wait runs on another connection than
        # the commit (here a new one, as with a connection per request).
        fresh = create_engine(settings.DATABASE_URL, future=True, poolclass=NullPool)
        with db.Session() as session, session.begin():
            session.get(Product, self.hammer.id).name = "Mallet"
        with fresh.connect() as other, self.assertLogs(self.NOTICES, level="INFO") as logged:
            answered = other.execute(text("SELECT cachebust.wait_for_delivery(5000)")).scalar_one()
        fresh.dispose()
        self.assertTrue(answered, "true at once: this connection committed nothing")
        self.assertEqual(len(logged.records), 1, logged.output)
        self.assertIn("NOTICE:  wait_for_delivery(): this session has committed no invalidation to wait for",
                      logged.output[0])
        self.assertIn("call cachebust.barrier()", logged.output[0])

if __name__ == "__main__":
    unittest.main()
