"""What the catalogue caches, under which Redis names, and how cachebust
reaches them.

dogpile.cache names an entry in two steps: the region's function key
generator turns a cached function and its arguments into a key, then the
region's key_mangler turns that key into the Redis name. Here

  key generator:  namespace + ":" + the arguments joined with ":"
                  get_product(7)                  -> "product:7"
                  get_category_products(3, "name") -> "category-products:3:name"
  key_mangler:    KEY_PREFIX + key                -> "catalog:product:7"

and the database has ALTER DATABASE ... SET cachebust.key_prefix = 'catalog:',
so cachebust names its targets exactly so:

  catalog:product:<id>                     one product        watch(keys => ARRAY['product:{id}'])
  catalog:category-products:<id>:<order>   a category's list, in the tag set below
  catalog:tag:category:<id>                a Redis SET        watch(tags => ARRAY['category:{category_id}'])
                                                              (cachebust.tag_prefix is 'tag:')

check_key_names() compares both sides at startup.
"""
import uuid

from dogpile.cache import make_region
from sqlalchemy import select, text

from . import db, settings
from .models import Product

# The Redis prefix of every entry; the database's cachebust.key_prefix.
KEY_PREFIX = "catalog:"
# dogpile regenerates an entry older than this; Redis drops it a little later.
ENTRY_TTL = 300
REDIS_TTL = ENTRY_TTL + 60
# A tag set never expires by itself: every registration pushes its expiry
# past that of the entry it adds, so it outlives its members, then goes.
TAG_TTL = REDIS_TTL + 60


def key_generator(namespace, fn, to_str=str):
    """A dogpile function key generator giving "<namespace>:<arg>:<arg>...":
    the namespace is the fixed part of a cachebust template, the arguments
    the columns. (dogpile's default, "<module>:<function>|<namespace>|<arg> <arg>",
    would work too with templates written that way; this one does not change
    when the code moves to another module.)"""
    if namespace is None:
        raise ValueError(f"{fn.__qualname__}: give cache_on_arguments() a namespace, the template's fixed part")

    def generate_key(*args, **kwargs):
        if kwargs:
            raise ValueError(f"{fn.__qualname__}: cached functions take positional arguments only")
        return ":".join([namespace, *map(to_str, args)])

    return generate_key


def prefix_mangler(key):
    """The key_mangler: the prefix only. A hashing mangler (sha1_mangle_key,
    length_conditional_mangler) would give names no trigger can compute."""
    return KEY_PREFIX + key


def make_catalog_region(key_mangler=prefix_mangler):
    """The catalogue's region in Redis (another key_mangler only to show the
    startup check refusing it)."""
    return make_region(function_key_generator=key_generator, key_mangler=key_mangler).configure(
        "dogpile.cache.redis",
        expiration_time=ENTRY_TTL,
        arguments={"url": settings.REDIS_URL, "redis_expiration_time": REDIS_TTL},
    )


region = make_catalog_region()


def redis_client(cache_region=region):
    """The region's own Redis client (for the tag sets)."""
    return cache_region.backend.writer_client


@region.cache_on_arguments(namespace="product")
def get_product(product_id):
    """One product as a dict, or None; cached under product:<id>. Nothing
    else is needed: the trigger deletes catalog:product:<id> once a
    transaction that inserted, changed or deleted the row commits."""
    with db.Session() as session:
        product = session.get(Product, product_id)
        if product is None:
            return None
        return {"id": product.id, "category_id": product.category_id, "name": product.name,
                "price": str(product.price)}


# The orders a category's list can be shown in.
ORDERS = {"name": Product.name, "price": Product.price}


def category_products_key(category_id, order="name"):
    return key_generator("category-products", get_category_products)(category_id, order)


def category_tag(category_id):
    """The cachebust tag of a category; the Redis set is prefix_mangler("tag:" + tag)."""
    return f"category:{category_id}"


def get_category_products(category_id, order="name"):
    """A category's products in one of ORDERS, cached under
    category-products:<id>:<order> and registered in the category's tag
    set, which cachebust deletes with its members when a product of the
    category is inserted, changed, moved or deleted. A row cannot name
    every list a view caches (each order, page, filter): a key with more
    arguments than the row has columns needs a tag set (or a pattern)."""
    key = category_products_key(category_id, order)
    created = False

    def load():
        nonlocal created
        created = True
        with db.Session() as session:
            rows = session.execute(select(Product.id, Product.name)
                                   .where(Product.category_id == category_id)
                                   .order_by(ORDERS[order], Product.id)).all()
            return [{"id": row.id, "name": row.name} for row in rows]

    products = region.get_or_create(key, load)
    if created:
        # The value first (get_or_create stored it), then its registration:
        # an invalidation falling between the two leaves the entry in the
        # new set, for the next one.
        add_to_tag(category_tag(category_id), key)
    return products


def add_to_tag(tag, key):
    """Adds the entry `key` to the cachebust tag set `tag`, both named as the
    region names keys; the set holds full Redis names."""
    tag_set = region.key_mangler("tag:" + tag)
    with redis_client().pipeline() as pipe:  # MULTI ... EXEC
        pipe.sadd(tag_set, region.key_mangler(key))
        pipe.expire(tag_set, TAG_TTL)
        pipe.execute()


class KeyNameMismatch(RuntimeError):
    pass


def check_key_names(cache_region=region):
    """Refuses to run when the region would store an entry under another
    Redis name than the one cachebust deletes: the database's
    cachebust.key_prefix is not the region's prefix, the key generator does
    not render like the template, or the key_mangler hashes. A probe is
    written the way get_product() writes product <probe>; it must land at
    cachebust.full_key() of the template product:{id} rendered for it."""
    probe = f"probe-{uuid.uuid4().hex}"
    with db.engine.connect() as connection:
        full_key, tag_set = connection.execute(text(
            "SELECT cachebust.full_key('product:' || :probe),"
            " cachebust.full_key(current_setting('cachebust.tag_prefix') || :tag)"),
            {"probe": probe, "tag": category_tag(probe)}).one()
    key = cache_region.function_key_generator("product", get_product.original)(probe)
    cache_region.set(key, True)
    try:
        if redis_client(cache_region).exists(full_key) != 1:
            raise KeyNameMismatch(
                f"the cache stores product {probe} as {cache_region.key_mangler(key)!r}, cachebust "
                f"deletes {full_key!r}: the database's cachebust.key_prefix must be {KEY_PREFIX!r} "
                "(ALTER DATABASE ... SET, as a superuser), and the key_mangler must only add it")
    finally:
        cache_region.delete(key)
    expected_tag_set = cache_region.key_mangler("tag:" + category_tag(probe))
    if tag_set != expected_tag_set:
        raise KeyNameMismatch(f"cachebust names the tag set {tag_set!r}, the application {expected_tag_set!r}")
