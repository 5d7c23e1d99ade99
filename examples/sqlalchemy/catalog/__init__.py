"""A product catalogue read through a dogpile.cache region in Redis and
written with SQLAlchemy; cachebust's triggers delete the entries a commit
makes stale (see ../README.md)."""
