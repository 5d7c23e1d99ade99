"""Attaches cachebust to blog_article (README.md, 3. The migration).

Every INSERT or DELETE of an article, and every UPDATE that changes its
title, body or author, invalidates the article's own entry article:<id> and
the tag set of its author (of both authors when the author changes), once
the transaction commits.

columns => ...: Django's save() writes every column of the row, so without
it a save() that changes only view_count would invalidate (one that changes
nothing at all would not: cachebust skips unchanged rows). The list holds every column the cached data is built from
(title, body: see blog/caching.py) and every column a target names
(author_id; id never changes). view_count is left out: it is not cached.
Caching another column later means a new migration that unwatches and
watches again with that column added.

The role running the migration needs EXECUTE on cachebust.invalidate(),
granted by a superuser (README.md, 2. Database setup).
"""
from django.db import migrations

WATCH = """
SELECT cachebust.watch('blog_article',
    keys    => ARRAY['article:{id}'],
    tags    => ARRAY['author:{author_id}'],
    columns => ARRAY['title', 'body', 'author_id'])
"""

UNWATCH = "SELECT cachebust.unwatch('blog_article')"


class Migration(migrations.Migration):

    dependencies = [
        ("blog", "0001_initial"),
    ]

    operations = [
        migrations.RunSQL(sql=WATCH, reverse_sql=UNWATCH),
    ]
