"""What the blog caches, under which names, and how cachebust reaches them.

Names are given to Django without its prefix; django-redis stores them as
"<KEY_PREFIX>:<VERSION>:<name>", the name cachebust gives a target once
cachebust.key_prefix is "<KEY_PREFIX>:<VERSION>:".

  article:<id>                  one article      watch(keys => ARRAY['article:{id}'])
  author-articles:<id>:<order>  an author's list, one per order, in the tag set tag:author:<id>
  tag:author:<id>               a Redis SET      watch(tags => ARRAY['author:{author_id}'])
                                                 (cachebust.tag_prefix is 'tag:')
"""
from django.core.cache import cache
from django.db import connection, transaction
from django_redis import get_redis_connection

from .models import Article

ARTICLE_TTL = 300
LIST_TTL = 300
# A tag set never expires on its own: every registration pushes its expiry
# past that of the member it adds, so it outlives all its members and
# disappears once nothing in it can still be cached.
TAG_TTL = LIST_TTL + 60


def article_key(pk):
    return f"article:{pk}"


# The orders a list of articles can be shown in.
ORDERS = {"new": "-pk", "title": "title"}


def author_articles_key(author_id, order="new"):
    return f"author-articles:{author_id}:{order}"


def author_tag(author_id):
    return f"tag:author:{author_id}"


def get_article(pk):
    """One article, cached under article:<pk>. Raises Article.DoesNotExist."""

    def load():
        article = Article.objects.get(pk=pk)
        return {"id": article.pk, "author_id": article.author_id, "title": article.title,
                "body": article.body}

    return cache.get_or_set(article_key(pk), load, ARTICLE_TTL)


def get_author_articles(author_id, order="new"):
    """An author's articles in one of ORDERS, cached under
    author-articles:<id>:<order> and registered in the tag set of the
    author, which cachebust deletes with its members when an article of the
    author is inserted, changed or deleted. (The row cannot name every
    variant a view caches -- each order, page or filter -- the tag set holds
    those that exist.)"""
    key = author_articles_key(author_id, order)
    articles = cache.get(key)
    if articles is None:
        articles = list(Article.objects.filter(author_id=author_id).order_by(ORDERS[order])
                        .values("id", "title"))
        # The value first, then its registration: should an invalidation
        # fall between the two, the entry is still found by the next one.
        cache.set(key, articles, LIST_TTL)
        add_to_tag(author_tag(author_id), key)
    return articles


def add_to_tag(tag, key):
    """Adds the cache entry `key` to the tag set `tag` (both named as Django
    names keys). The set holds full Redis names: cache.make_key()."""
    tag_set = cache.make_key(tag)
    with get_redis_connection("default").pipeline() as pipe:  # MULTI ... EXEC
        pipe.sadd(tag_set, cache.make_key(key))
        pipe.expire(tag_set, TAG_TTL)
        pipe.execute()


def wait_for_invalidations(timeout_ms=5000):
    """True once cachebust has deleted everything any session committed
    before this call; False on timeout (Redis unreachable, worker behind)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT cachebust.barrier(%s)", [timeout_ms])
        return cursor.fetchone()[0]


def retitle_article(pk, title):
    """Renames an article and warms its cache entry once the rename commits."""
    with transaction.atomic():
        article = Article.objects.select_for_update().get(pk=pk)
        article.title = title
        article.save()
        transaction.on_commit(lambda: warm_article(pk))


def warm_article(pk):
    # An on_commit callback runs right after COMMIT, before cachebust's worker
    # has deleted anything: reading the cache now would find the old entry.
    # barrier() returns once this commit's invalidations are delivered.
    if wait_for_invalidations():
        get_article(pk)
    # On timeout leave the entry alone: the next reader fills it.
