"""The recipe of README.md, exercised against a real PostgreSQL with
cachebust and a real Redis (run by test/t/010_django.pl).

TransactionTestCase, never TestCase: TestCase runs every test inside a
transaction that is rolled back at the end, so nothing ever commits and
cachebust never invalidates anything. TransactionTestCase commits, and
empties the tables after each test with TRUNCATE -- which cachebust turns
into patterns (article:*) and tag patterns (tag:author:*) of this database's
key prefix.
"""
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import F
from django.test import TransactionTestCase
from django_redis import get_redis_connection

from .caching import (ORDERS, TAG_TTL, article_key, author_articles_key, author_tag, get_article,
                      retitle_article, wait_for_invalidations)
from .models import Article, Author


class Rollback(Exception):
    pass


class InvalidationTests(TransactionTestCase):

    def setUp(self):
        # The previous test's TRUNCATE committed invalidations too: let them
        # be delivered before this test fills the cache, or they could land
        # in the middle of it.
        self.assertTrue(wait_for_invalidations())
        # Only this database's names (blog_test:1:*): cache.clear() would be
        # FLUSHDB, the whole Redis database.
        cache.delete_pattern("*")
        self.redis = get_redis_connection("default")
        self.alice = Author.objects.create(name="Alice")
        self.bob = Author.objects.create(name="Bob")
        self.one = Article.objects.create(author=self.alice, title="One", body="first")
        self.two = Article.objects.create(author=self.alice, title="Two", body="second")
        self.three = Article.objects.create(author=self.bob, title="Three", body="third")
        # The inserts invalidate too (their authors' tag sets).
        self.assertTrue(wait_for_invalidations())

    # ---- helpers

    def in_redis(self, name):
        """Whether Redis holds the entry Django calls `name`."""
        return self.redis.exists(cache.make_key(name)) == 1

    def fill_article(self, article):
        response = self.client.get(f"/articles/{article.pk}/")
        self.assertEqual(response.status_code, 200)
        self.assertTrue(self.in_redis(article_key(article.pk)))
        return response.json()

    def fill_list(self, author, order="new"):
        response = self.client.get(f"/authors/{author.pk}/articles/", {"order": order})
        self.assertEqual(response.status_code, 200)
        self.assertTrue(self.in_redis(author_articles_key(author.pk, order)))
        return [a["title"] for a in response.json()["articles"]]

    def delivered(self):
        self.assertTrue(wait_for_invalidations(), "cachebust.barrier() timed out")

    def pending(self):
        with connection.cursor() as cursor:
            cursor.execute("SELECT kind, target FROM cachebust.pending() ORDER BY 1, 2")
            return cursor.fetchall()

    # ---- writes through the ORM

    def test_save_invalidates_the_article(self):
        self.fill_article(self.one)
        self.fill_article(self.two)
        self.one.title = "One, revised"
        self.one.save()
        self.delivered()
        self.assertFalse(self.in_redis(article_key(self.one.pk)))
        self.assertIsNone(cache.get(article_key(self.one.pk)))
        self.assertTrue(self.in_redis(article_key(self.two.pk)), "another article's entry is kept")
        self.assertEqual(self.fill_article(self.one)["title"], "One, revised")

    def test_delete_invalidates_the_article_and_the_list(self):
        self.fill_article(self.two)
        self.fill_list(self.alice)
        self.two.delete()
        self.delivered()
        self.assertFalse(self.in_redis(article_key(self.two.pk)))
        self.assertFalse(self.in_redis(author_articles_key(self.alice.pk)))
        self.assertEqual(self.client.get(f"/articles/{self.two.pk}/").status_code, 404)
        self.assertEqual(self.fill_list(self.alice), ["One"])

    def test_queryset_update(self):
        for article in (self.one, self.two, self.three):
            self.fill_article(article)
        self.fill_list(self.alice)
        self.fill_list(self.bob)
        Article.objects.filter(author=self.alice).update(body="rewritten")
        self.delivered()
        self.assertFalse(self.in_redis(article_key(self.one.pk)))
        self.assertFalse(self.in_redis(article_key(self.two.pk)))
        self.assertFalse(self.in_redis(author_articles_key(self.alice.pk)))
        self.assertTrue(self.in_redis(article_key(self.three.pk)), "Bob's article is kept")
        self.assertTrue(self.in_redis(author_articles_key(self.bob.pk)), "Bob's list is kept")
        self.assertEqual(self.fill_article(self.one)["body"], "rewritten")

    def test_bulk_create_invalidates_the_authors_list(self):
        self.assertEqual(self.fill_list(self.alice), ["Two", "One"])
        self.fill_list(self.bob)
        Article.objects.bulk_create([Article(author=self.alice, title="Four"),
                                     Article(author=self.alice, title="Five")])
        self.delivered()
        self.assertFalse(self.in_redis(author_articles_key(self.alice.pk)))
        self.assertFalse(self.in_redis(author_tag(self.alice.pk)), "the tag set went with its member")
        self.assertTrue(self.in_redis(author_articles_key(self.bob.pk)))
        self.assertEqual(self.fill_list(self.alice), ["Five", "Four", "Two", "One"])

    # ---- writes around the ORM

    def test_raw_sql_update(self):
        self.fill_article(self.three)
        with connection.cursor() as cursor:
            cursor.execute("UPDATE blog_article SET body = %s WHERE id = %s", ["raw", self.three.pk])
        self.delivered()
        self.assertFalse(self.in_redis(article_key(self.three.pk)))
        self.assertEqual(self.fill_article(self.three)["body"], "raw")

    def test_truncate_invalidates_every_article_and_list(self):
        for article in (self.one, self.two, self.three):
            self.fill_article(article)
        self.fill_list(self.alice)
        self.fill_list(self.bob)
        cache.set("motd", "not an article")
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE blog_article")
        self.delivered()
        for article in (self.one, self.two, self.three):
            self.assertFalse(self.in_redis(article_key(article.pk)))
        for author in (self.alice, self.bob):
            self.assertFalse(self.in_redis(author_articles_key(author.pk)))
            self.assertFalse(self.in_redis(author_tag(author.pk)))
        self.assertEqual(cache.get("motd"), "not an article", "article:* and tag:author:* only")

    # ---- what does not invalidate

    def test_rolled_back_atomic_block_leaves_the_cache_alone(self):
        self.fill_article(self.one)
        self.fill_list(self.alice)
        try:
            with transaction.atomic():
                self.one.title = "never committed"
                self.one.save()
                self.assertEqual(self.pending(), [
                    ("key", cache.make_key(article_key(self.one.pk))),
                    ("tag", cache.make_key(author_tag(self.alice.pk))),
                ])
                raise Rollback
        except Rollback:
            pass
        self.delivered()
        self.assertEqual(cache.get(article_key(self.one.pk))["title"], "One")
        self.assertTrue(self.in_redis(author_articles_key(self.alice.pk)))

    def test_save_changing_only_an_unwatched_column_does_not_invalidate(self):
        self.fill_article(self.one)
        self.fill_list(self.alice)
        with transaction.atomic():
            self.one.view_count += 1
            self.one.save()  # UPDATE ... SET author_id, title, body, view_count
            Article.objects.get(pk=self.one.pk).save()  # changes nothing at all
            # Writes only view_count: the UPDATE OF trigger does not fire.
            Article.objects.filter(pk=self.one.pk).update(view_count=F("view_count") + 1)
            self.assertEqual(self.pending(), [])
        self.delivered()
        self.assertTrue(self.in_redis(article_key(self.one.pk)))
        self.assertTrue(self.in_redis(author_articles_key(self.alice.pk)))
        self.assertEqual(Article.objects.get(pk=self.one.pk).view_count, 2)

    # ---- tags

    def test_list_is_registered_in_the_authors_tag_set(self):
        self.assertEqual(self.fill_list(self.alice, "new"), ["Two", "One"])
        self.assertEqual(self.fill_list(self.alice, "title"), ["One", "Two"])
        tag_set = cache.make_key(author_tag(self.alice.pk))
        members = {cache.make_key(author_articles_key(self.alice.pk, order)) for order in ORDERS}
        self.assertEqual(self.redis.smembers(tag_set), {m.encode() for m in members})
        self.assertTrue(0 < self.redis.ttl(tag_set) <= TAG_TTL, "the tag set expires")
        # The same names as cachebust gives its targets in this database.
        with connection.cursor() as cursor:
            cursor.execute("SELECT cachebust.full_key(%s), cachebust.full_key(%s)",
                           [author_tag(self.alice.pk), author_articles_key(self.alice.pk, "new")])
            self.assertEqual(cursor.fetchone(),
                             (tag_set, cache.make_key(author_articles_key(self.alice.pk, "new"))))

    def test_changing_the_author_invalidates_both_lists(self):
        for order in ORDERS:
            self.fill_list(self.alice, order)
            self.fill_list(self.bob, order)
        self.two.author = self.bob
        self.two.save()
        self.delivered()
        for author in (self.alice, self.bob):
            for order in ORDERS:
                self.assertFalse(self.in_redis(author_articles_key(author.pk, order)))
            self.assertFalse(self.in_redis(author_tag(author.pk)))
        self.assertEqual(self.fill_list(self.alice), ["One"])
        self.assertEqual(self.fill_list(self.bob), ["Three", "Two"])

    # ---- after COMMIT

    def test_on_commit_callback_waits_with_barrier(self):
        self.fill_article(self.one)
        retitle_article(self.one.pk, "One, renamed")
        # warm_article() ran at COMMIT, after barrier(): it read the new row
        # into the cache, not the old entry.
        self.assertEqual(cache.get(article_key(self.one.pk))["title"], "One, renamed")
        # And no invalidation of that commit is still to come.
        self.delivered()
        self.assertEqual(cache.get(article_key(self.one.pk))["title"], "One, renamed")

    # ---- out of reach (README.md, "What a Django user still cannot express")

    def test_incr_version_moves_an_entry_out_of_reach(self):
        key = article_key(self.one.pk)
        get_article(self.one.pk)
        self.assertEqual(cache.incr_version(key), 2)  # now blog_test:2:article:<id>
        self.one.title = "One, revised"
        self.one.save()
        self.delivered()
        self.assertEqual(cache.get(key, version=2)["title"], "One",
                         "cachebust deleted blog_test:1:article:<id>; version 2 stays stale")
        cache.delete(key, version=2)
