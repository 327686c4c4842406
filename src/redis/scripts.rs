//! The Lua scripts: each decision is one of them, run atomically by Redis.
//!
//! Every script reads the clock from Redis (`TIME`), so the replicas share one clock as well as
//! one count; the window script also takes a clock reading from the caller, which is how the
//! tests compare it with the in-memory window for the same readings. Deadlines are absolute
//! (`PEXPIREAT`, `PEXPIRETIME`, Redis 7) for the same reason: a window ends when the reading
//! passes its deadline, whoever reads.

use redis::Script;
use redis::aio::ConnectionManager;

/// `now` in Unix milliseconds: `ARGV[n]` when the caller passed a reading, else Redis's `TIME`.
const NOW: &str = r"
local function now_ms(reading)
  if reading and reading ~= '' and tonumber(reading) > 0 then return tonumber(reading) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
";

/// The lockout state of a client: `{0}` clean, `{1}` failures on record, `{2, ms}` locked for
/// `ms` more milliseconds. A lock left without expiry is repaired to the full lockout.
const LOCK_STATE: &str = r"
local function lock_state(failures_key, lock_key, lockout_ms)
  local left = redis.call('PTTL', lock_key)
  if left == -1 then
    redis.call('PEXPIRE', lock_key, lockout_ms)
    left = lockout_ms
  end
  if left > 0 then return {2, left} end
  if redis.call('EXISTS', failures_key) == 1 then return {1, 0} end
  return {0, 0}
end
";

/// One request counted in its fixed window (SPEC §2.3).
///
/// KEYS: the window. ARGV: window ms, clock reading (0: Redis's). Returns `{count, ms left}`.
/// `INCR`; the first hit of a window sets its deadline (`PEXPIREAT`); a window whose deadline has
/// passed by the reading is over (Redis may not have expired it yet when the reading is the
/// caller's); a key left without expiry (`PEXPIRETIME` -1) gets one, keeping its count.
const WINDOW: &str = r"
local now = now_ms(ARGV[2])
local window = tonumber(ARGV[1])
local deadline = redis.call('PEXPIRETIME', KEYS[1])
if deadline >= 0 and deadline <= now then
  redis.call('DEL', KEYS[1])
  deadline = -2
end
local count = redis.call('INCR', KEYS[1])
if count == 1 or deadline < 0 then
  deadline = now + window
  redis.call('PEXPIREAT', KEYS[1], deadline)
end
return {count, deadline - now}
";

/// One in-flight slot taken as a lease (SPEC §2.4), and the lockout state of the request's client
/// read in the same round trip.
///
/// KEYS: the slots (a sorted set of lease ids scored by their deadlines), then optionally the
/// client's failures and lock keys. ARGV: slots per key, lease ms, lease id, lockout ms.
/// Returns `{taken (0/1), lock kind, lock ms}`; lock kind -1 when no lockout keys were given.
/// Leases past their deadline (a crashed replica's) are dropped first; the set expires with its
/// longest lease.
const ACQUIRE: &str = r"
local now = now_ms('')
local lease = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local taken = 0
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], lease)
  taken = 1
end
if #KEYS < 3 then return {taken, -1, 0} end
local lock = lock_state(KEYS[2], KEYS[3], tonumber(ARGV[4]))
return {taken, lock[1], lock[2]}
";

/// Extends the leases a replica still holds (SPEC §2.4: renewed while the body streams).
///
/// KEYS: the slot sets, one per lease. ARGV: lease ms, then the lease ids in the order of KEYS.
/// A lease already released or lapsed is not brought back (`XX`). Returns how many were renewed.
const RENEW: &str = r"
local now = now_ms('')
local lease = tonumber(ARGV[1])
local renewed = 0
for i, key in ipairs(KEYS) do
  renewed = renewed + redis.call('ZADD', key, 'XX', 'CH', now + lease, ARGV[i + 1])
  redis.call('PEXPIRE', key, lease, 'GT')
end
return renewed
";

/// Whether a client is locked out (SPEC §2.2). KEYS: failures, lock. ARGV: lockout ms.
const CHECK: &str = r"
return lock_state(KEYS[1], KEYS[2], tonumber(ARGV[1]))
";

/// One failed authentication: counted in a window anchored at the first failure; at the limit the
/// client is locked out and its count forgotten. A locked-out client's failures are not counted.
///
/// KEYS: failures, lock. ARGV: max failures, window ms, lockout ms. Returns the count (0 when
/// locked out already).
const FAIL: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local failures = redis.call('INCR', KEYS[1])
if failures == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if failures >= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  redis.call('DEL', KEYS[1])
end
return failures
";

/// The scripts, compiled once per process (their SHA-1s).
pub(crate) struct Scripts {
    pub(crate) window: Script,
    pub(crate) acquire: Script,
    pub(crate) renew: Script,
    pub(crate) check: Script,
    pub(crate) fail: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            window: Script::new(&format!("{NOW}{WINDOW}")),
            acquire: Script::new(&format!("{NOW}{LOCK_STATE}{ACQUIRE}")),
            renew: Script::new(&format!("{NOW}{RENEW}")),
            check: Script::new(&format!("{LOCK_STATE}{CHECK}")),
            fail: Script::new(FAIL),
        }
    }

    /// `SCRIPT LOAD`s them all, so decisions can run them by hash.
    pub(crate) async fn load(&self, connection: &mut ConnectionManager) -> redis::RedisResult<()> {
        for script in [
            &self.window,
            &self.acquire,
            &self.renew,
            &self.check,
            &self.fail,
        ] {
            script.load_async(connection).await?;
        }
        Ok(())
    }
}
