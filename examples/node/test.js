// The recipe of app.js against a real PostgreSQL with cachebust and a real
// Redis (test/t/011_node.pl runs it): every assertion on a cached value
// after a write would fail without the triggers.
//
//   PGHOST=... PGPORT=... PGDATABASE=teams PGUSER=teams_app \
//   REDIS_URL=redis://127.0.0.1:6379/0 node --test test.js
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import pg from 'pg';
import Keyv from 'keyv';
import KeyvRedis, { createKeyv } from '@keyv/redis';
import { CACHE_NAMESPACE, TAG_TTL_S, TeamDirectory } from './app.js';

const REDIS_URL = process.env.REDIS_URL;

describe('cachebust with keyv and pg', () => {
  let app;
  let redis; // the cache's own connection, to read Redis as it is
  let other; // another session: a second service, a migration, psql

  before(async () => {
    assert.ok(REDIS_URL, 'REDIS_URL names the Redis database cachebust.redis_url names');
    app = TeamDirectory.connect(REDIS_URL);
    await app.migrate();
    await app.checkKeyNames();
    redis = await app.cache.store.getClient();
    other = new pg.Client();
    await other.connect();
  });

  after(async () => {
    await other?.end();
    await app?.close();
  });

  beforeEach(async () => {
    await app.pool.query('DELETE FROM users');
    await app.pool.query(`INSERT INTO users (id, team_id, name)
                          VALUES (1, 7, 'Ann'), (2, 7, 'Bob'), (3, 8, 'Cid')`);
    // The previous test's writes and these are invalidations too: let them
    // land before the cache is emptied, not in the middle of the test.
    assert.equal(await app.waitForInvalidations(), true);
    await app.cache.clear(); // this namespace only (SCAN teams::*), not FLUSHDB
  });

  it('keyv stores user:1 under teams::user:1, the name cachebust.full_key() gives it', async () => {
    assert.deepEqual(await app.getUser(1), { id: 1, teamId: 7, name: 'Ann' });
    assert.deepEqual(await redis.keys(`${CACHE_NAMESPACE}::*`), ['teams::user:1']);
    const { rows } = await app.pool.query("SELECT cachebust.full_key('user:1') AS name");
    assert.equal(rows[0].name, 'teams::user:1');
    // keyv's own envelope around the value; cachebust only deletes the key.
    assert.deepEqual(JSON.parse(await redis.get('teams::user:1')).value, { id: 1, teamId: 7, name: 'Ann' });
  });

  it('checkKeyNames() refuses caches whose names cachebust would not delete', async () => {
    const caches = [
      createKeyv(REDIS_URL, { namespace: 'other' }), // other::k
      new Keyv(new KeyvRedis(REDIS_URL), { namespace: CACHE_NAMESPACE }), // teams::teams:k
    ];
    for (const cache of caches) {
      const wrong = new TeamDirectory({ pool: app.pool, cache });
      await assert.rejects(wrong.checkKeyNames(), /cachebust\.key_prefix of the database must be/);
      await cache.disconnect();
    }
    assert.deepEqual(await redis.keys('*probe*'), [], 'the probes are deleted');
  });

  it('a rename is read back once wait_for_delivery() returns on the writing connection', async () => {
    assert.equal((await app.getUser(1)).name, 'Ann');
    assert.equal(await redis.exists('teams::user:1'), 1);
    assert.equal(await app.renameUser(1, 'Ann Lee'), true);
    assert.equal(await redis.exists('teams::user:1'), 0);
    assert.deepEqual(await app.getUser(1), { id: 1, teamId: 7, name: 'Ann Lee' });
  });

  it('a write of another session is read back once barrier() returns', async () => {
    assert.equal((await app.getUser(3)).name, 'Cid');
    await other.query("UPDATE users SET name = 'Cid Roe' WHERE id = 3");
    // barrier() on whichever pool client: it covers every session's commits.
    assert.equal(await app.waitForInvalidations(), true);
    assert.equal(await redis.exists('teams::user:3'), 0);
    assert.equal((await app.getUser(3)).name, 'Cid Roe');
  });

  it('a team list is registered in the team tag set and deleted with it', async () => {
    assert.deepEqual(await app.getTeamUsers(7), [{ id: 1, name: 'Ann' }, { id: 2, name: 'Bob' }]);
    assert.deepEqual(await redis.sMembers('teams::tag:team:7'), ['teams::team-users:7']);
    const listTtl = await redis.pTTL('teams::team-users:7');
    const tagTtl = await redis.pTTL('teams::tag:team:7');
    assert.ok(listTtl > 0 && tagTtl > listTtl && tagTtl <= TAG_TTL_S * 1000,
      `the tag set (${tagTtl} ms) outlives the list (${listTtl} ms)`);

    await other.query("INSERT INTO users (id, team_id, name) VALUES (4, 7, 'Dee')");
    assert.equal(await app.waitForInvalidations(), true);
    assert.equal(await redis.exists(['teams::team-users:7', 'teams::tag:team:7']), 0);
    assert.deepEqual((await app.getTeamUsers(7)).map((u) => u.name), ['Ann', 'Bob', 'Dee']);
  });

  it("moving a user invalidates the user and both teams' lists", async () => {
    await app.getUser(2);
    assert.deepEqual((await app.getTeamUsers(7)).map((u) => u.name), ['Ann', 'Bob']);
    assert.deepEqual((await app.getTeamUsers(8)).map((u) => u.name), ['Cid']);
    await other.query('UPDATE users SET team_id = 8 WHERE id = 2');
    assert.equal(await app.waitForInvalidations(), true);
    assert.deepEqual(await redis.keys('teams::*'), []);
    assert.equal((await app.getUser(2)).teamId, 8);
    assert.deepEqual((await app.getTeamUsers(7)).map((u) => u.name), ['Ann']);
    assert.deepEqual((await app.getTeamUsers(8)).map((u) => u.name), ['Bob', 'Cid']);
  });

  it('a rolled-back transaction invalidates nothing', async () => {
    await app.getUser(1);
    await app.getUser(2);
    await other.query('BEGIN');
    await other.query("UPDATE users SET name = 'Ann (draft)' WHERE id = 1");
    const { rows: pending } = await other.query('SELECT kind, target FROM cachebust.pending() ORDER BY 1, 2');
    assert.deepEqual(pending, [
      { kind: 'key', target: 'teams::user:1' },
      { kind: 'tag', target: 'teams::tag:team:7' },
    ]);
    await other.query('ROLLBACK');
    // A commit after the rollback, delivered: the worker has run since.
    await other.query("UPDATE users SET name = 'Bob Ray' WHERE id = 2");
    assert.equal(await app.waitForInvalidations(), true);
    assert.equal(await redis.exists('teams::user:2'), 0);
    assert.equal(await redis.exists('teams::user:1'), 1, 'user:1 is still cached');
    assert.equal((await app.getUser(1)).name, 'Ann');
  });
});
