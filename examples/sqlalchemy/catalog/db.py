"""The engine, the session factory, and where a session waits for cachebust.

A Session hands its connection back to the pool at commit(), so the next
statement may run on another PostgreSQL connection: wait_for_delivery(),
which waits for what *its* connection committed, would have nothing to wait
for. The after_commit hook below therefore calls barrier(), which waits for
every commit made before it, on whichever pooled connection it gets.
"""
import logging

from sqlalchemy import create_engine, event, text
from sqlalchemy.orm import sessionmaker

from . import settings

log = logging.getLogger(__name__)

# after_commit runs while the session still holds its connection, and the
# barrier takes a second one: the pool must allow two per thread (the
# default QueuePool allows 5 + 10 overflow).
engine = create_engine(settings.DATABASE_URL, future=True)
Session = sessionmaker(engine, future=True, expire_on_commit=False)

WAIT_TIMEOUT_MS = 5000


def wait_for_invalidations(timeout_ms=WAIT_TIMEOUT_MS):
    """True once cachebust has applied in Redis every invalidation any
    session committed before this call; False on timeout (Redis
    unreachable, the worker behind)."""
    with engine.connect() as connection:
        return connection.execute(text("SELECT cachebust.barrier(:timeout_ms)"),
                                  {"timeout_ms": timeout_ms}).scalar_one()


# ---- read-your-writes: a session that wrote waits after its commit

@event.listens_for(Session, "after_flush")
def _note_orm_write(session, flush_context):
    session.info["wrote"] = True


@event.listens_for(Session, "do_orm_execute")
def _note_statement_write(state):
    # update(), delete(), insert() and text() statements through
    # session.execute() write without a flush; only SELECTs are left out.
    if not state.is_select:
        state.session.info["wrote"] = True


@event.listens_for(Session, "after_commit")
def _wait_after_a_write(session):
    # The Session can emit no SQL here (its transaction is over): barrier()
    # runs on another pooled connection, which is right for barrier() and
    # would be wrong for wait_for_delivery().
    if session.info.pop("wrote", False) and not wait_for_invalidations():
        log.warning("cachebust did not deliver within %d ms; the cache may serve old rows "
                    "until it does", WAIT_TIMEOUT_MS)


@event.listens_for(Session, "after_transaction_end")
def _forget_rolled_back_write(session, transaction):
    # The outermost transaction is over (after_commit has already run on a
    # commit): a rolled-back write has nothing to wait for.
    if transaction.parent is None:
        session.info.pop("wrote", None)
