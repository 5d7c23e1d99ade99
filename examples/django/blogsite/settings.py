"""Settings of the cachebust example. Connection details come from the
environment (test/t/010_django.pl sets them); everything else is fixed here
because it has to agree with what the database says (README.md)."""
import os
import sys

# `manage.py test` connects as its own role, whose cachebust.key_prefix is
# the test prefix (README.md, 9. Tests).
TESTING = sys.argv[1:2] == ["test"]

SECRET_KEY = os.environ.get("BLOG_SECRET_KEY", "example-only-not-a-secret")
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]

INSTALLED_APPS = ["blog"]
MIDDLEWARE = []
ROOT_URLCONF = "blogsite.urls"
USE_TZ = True

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("BLOG_DB_HOST", ""),  # a directory: the Unix socket
        "PORT": os.environ.get("BLOG_DB_PORT", ""),
        "NAME": os.environ.get("BLOG_DB_NAME", "blog"),  # the test database is test_<NAME>
        "USER": (os.environ.get("BLOG_TEST_DB_USER", "blog_test") if TESTING
                 else os.environ.get("BLOG_DB_USER", "blog_app")),
    }
}

# django-redis names a key "<KEY_PREFIX>:<VERSION>:<key>" (Django's default
# KEY_FUNCTION), so cachebust.key_prefix must be "<KEY_PREFIX>:<VERSION>:" in
# the database Django writes to:
#     ALTER DATABASE blog SET cachebust.key_prefix = 'blog:1:';
#     ALTER ROLE blog_test SET cachebust.key_prefix = 'blog_test:1:';
# Changing either value here means changing it there too, in the same
# deployment; `manage.py check --database default` compares them.
CACHE_KEY_PREFIX = "blog_test" if TESTING else "blog"
CACHE_VERSION = 1

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        # Must be the Redis database cachebust.redis_url names: the server's
        # worker deletes there, for every database of the cluster.
        "LOCATION": os.environ.get("BLOG_REDIS_URL", "redis://127.0.0.1:6379/0"),
        "KEY_PREFIX": CACHE_KEY_PREFIX,
        "VERSION": CACHE_VERSION,
    }
}
