// A team directory cached in Redis with keyv (@keyv/redis) and kept
// consistent by cachebust: the application only reads through the cache and
// writes to PostgreSQL; the table's triggers delete the entries a commit
// makes stale.
//
// Redis names (createKeyv with the namespace "teams" stores key k as "teams::k"):
//
//   teams::user:<id>           one user          watch(keys => ARRAY['user:{id}'])
//   teams::team-users:<team>   a team's members, a member of the tag set below
//   teams::tag:team:<team>     a Redis SET       watch(tags => ARRAY['team:{team_id}'])
//
// which are the names cachebust gives its targets once the database has
// ALTER DATABASE ... SET cachebust.key_prefix = 'teams::' (and the default
// cachebust.tag_prefix 'tag:').
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { createKeyv } from '@keyv/redis';

export const CACHE_NAMESPACE = 'teams';
export const USER_TTL_MS = 300_000;
export const LIST_TTL_MS = 300_000;
// A tag set never expires by itself: each registration pushes its expiry
// past that of the list it adds, so it outlives its members, then goes.
export const TAG_TTL_S = LIST_TTL_MS / 1000 + 60;

export const userKey = (id) => `user:${id}`;
export const teamUsersKey = (teamId) => `team-users:${teamId}`;
// A cachebust tag name: the Redis set is <key_prefix><tag_prefix>team:<id>.
export const teamTag = (teamId) => `team:${teamId}`;

export class TeamDirectory {
  constructor({ pool, cache }) {
    this.pool = pool;
    this.cache = cache;
  }

  // PostgreSQL from the libpq variables (PGHOST, PGPORT, PGDATABASE,
  // PGUSER, ...); Redis at redisUrl, the database cachebust.redis_url names.
  static connect(redisUrl) {
    const pool = new pg.Pool();
    // createKeyv, not new Keyv(new KeyvRedis(...)), which would prefix
    // twice ("teams::teams:user:1"; checkKeyNames() refuses that).
    const cache = createKeyv(redisUrl, { namespace: CACHE_NAMESPACE });
    // keyv reports a failing Redis as events and reads as misses: the
    // directory then reads PostgreSQL.
    cache.on('error', (error) => console.error('cache:', error.message ?? error));
    return new TeamDirectory({ pool, cache });
  }

  async close() {
    await this.cache.disconnect();
    await this.pool.end();
  }

  // The table and its triggers. Run by the role that owns the table, which
  // needs EXECUTE on cachebust.invalidate() (granted by a superuser).
  async migrate() {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(`CREATE TABLE IF NOT EXISTS users (
        id integer PRIMARY KEY,
        team_id integer NOT NULL,
        name text NOT NULL)`);
      // Every INSERT, UPDATE, DELETE and TRUNCATE of users invalidates
      // user:<id> and the tag set of the team (of both teams on a move).
      await client.query(`SELECT cachebust.watch('users',
          keys => ARRAY['user:{id}'], tags => ARRAY['team:{team_id}'])
        WHERE NOT EXISTS (SELECT FROM cachebust.watches WHERE "table" = 'users'::regclass)`);
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK');
      throw error;
    } finally {
      client.release();
    }
  }

  // Refuses to run when keyv would store a key under another name than the
  // one cachebust deletes (cachebust.key_prefix not the cache's namespace).
  async checkKeyNames() {
    const probe = `cachebust-probe:${randomUUID()}`;
    const { rows: [{ name }] } = await this.pool.query('SELECT cachebust.full_key($1) AS name', [probe]);
    const redis = await this.cache.store.getClient();
    await this.cache.set(probe, true, 10_000);
    try {
      if ((await redis.exists(name)) !== 1) {
        throw new Error(`the cache does not store "${probe}" as "${name}" (cachebust.full_key): ` +
          `cachebust.key_prefix of the database must be the cache's prefix, "${CACHE_NAMESPACE}::"`);
      }
    } finally {
      await this.cache.delete(probe);
    }
  }

  // One user, cached under user:<id>; null when there is none.
  async getUser(id) {
    const key = userKey(id);
    const cached = await this.cache.get(key);
    if (cached !== undefined) return cached;
    const { rows } = await this.pool.query(
      'SELECT id, team_id AS "teamId", name FROM users WHERE id = $1', [id]);
    if (rows.length === 0) return null;
    await this.cache.set(key, rows[0], USER_TTL_MS);
    return rows[0];
  }

  // A team's members, cached under team-users:<team> and registered in the
  // team's tag set, which cachebust deletes with its members when a user of
  // the team is inserted, changed, moved or deleted. (A row cannot name every
  // list a view caches -- pages, orders, filters; the tag set holds those
  // that exist.)
  async getTeamUsers(teamId) {
    const key = teamUsersKey(teamId);
    const cached = await this.cache.get(key);
    if (cached !== undefined) return cached;
    // The Redis names come from the database, with the prefixes cachebust
    // applies: the member is the list's full name, the set the tag's.
    const { rows: [row] } = await this.pool.query(`
      SELECT cachebust.full_key($2) AS member,
             cachebust.full_key(current_setting('cachebust.tag_prefix') || $3) AS tag_set,
             coalesce((SELECT json_agg(json_build_object('id', id, 'name', name) ORDER BY id)
                       FROM users WHERE team_id = $1), '[]') AS users`,
    [teamId, key, teamTag(teamId)]);
    // The value first, then its registration: an invalidation that falls
    // between the two leaves the entry in the new set, for the next one.
    await this.cache.set(key, row.users, LIST_TTL_MS);
    const redis = await this.cache.store.getClient();
    await redis.multi().sAdd(row.tag_set, row.member).expire(row.tag_set, TAG_TTL_S).exec();
    return row.users;
  }

  // Renames a user; true once the cache no longer holds the old name.
  // wait_for_delivery() waits for what its own session committed, so it
  // runs on the connection that wrote.
  async renameUser(id, name, timeoutMs = 5000) {
    const client = await this.pool.connect();
    try {
      await client.query('UPDATE users SET name = $2 WHERE id = $1', [id, name]);
      const { rows } = await client.query('SELECT cachebust.wait_for_delivery($1) AS delivered', [timeoutMs]);
      return rows[0].delivered;
    } finally {
      client.release();
    }
  }

  // True once every invalidation committed before the call, by any
  // session (another pool client, another process), is delivered; false on
  // timeout (Redis unreachable, the worker behind).
  async waitForInvalidations(timeoutMs = 5000) {
    const { rows } = await this.pool.query('SELECT cachebust.barrier($1) AS delivered', [timeoutMs]);
    return rows[0].delivered;
  }
}
