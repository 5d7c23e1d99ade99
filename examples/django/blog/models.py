from django.db import models


class Author(models.Model):
    name = models.CharField(max_length=100)


class Article(models.Model):
    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="articles")
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    # Written on every page view and not part of what is cached: left out of
    # watch(columns => ...) in migrations/0002_cachebust_watch.py.
    view_count = models.PositiveIntegerField(default=0)
