"""The startup check as a command: `python3 -m catalog.check` exits 1, saying
which names differ, when the database would invalidate other Redis names
than the ones the cache region writes. An application calls
caching.check_key_names() once at startup."""
import sys

from .caching import KeyNameMismatch, check_key_names

if __name__ == "__main__":
    try:
        check_key_names()
    except KeyNameMismatch as error:
        print(f"catalog: {error}", file=sys.stderr)
        sys.exit(1)
    print("catalog: cachebust deletes the names the cache writes")
