"""`manage.py check --database default` (and `manage.py test`, which runs the
checks against the test database) fail when the database would invalidate
other Redis names than the ones Django writes."""
from django.core.cache import cache
from django.core.checks import Error, Tags, register
from django.db import connections


@register(Tags.database)
def cachebust_names_match(app_configs, databases=None, **kwargs):
    if not databases or "default" not in databases:
        return []
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT cachebust.full_key('probe'),"
                       " cachebust.full_key(current_setting('cachebust.tag_prefix') || 'probe')")
        key, tag = cursor.fetchone()
    errors = []
    if key != cache.make_key("probe"):
        errors.append(Error(
            f"cachebust invalidates {key!r} where Django caches {cache.make_key('probe')!r}",
            hint="Set cachebust.key_prefix to '<KEY_PREFIX>:<VERSION>:' for this database or role.",
            id="blog.E001"))
    elif tag != cache.make_key("tag:probe"):
        errors.append(Error(
            f"cachebust's tag sets are named like {tag!r}, Django's like {cache.make_key('tag:probe')!r}",
            hint="cachebust.tag_prefix must be 'tag:'.",
            id="blog.E002"))
    return errors
