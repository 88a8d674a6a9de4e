//! The Lua scripts that read and change pool state on the Redis server.
//!
//! Each script runs atomically, so two processes can never both take the
//! last unit of a budget. The rules mirror `tokenfleet_core::store`
//! (`BudgetView::admits`, `apply_observation`, `MemoryStore::settle_now`
//! and `MemoryStore::cool_down_now`). A change there needs the same change
//! here, and the tests in `tests/scripts.rs` compare the two.
//!
//! Every script that touches one (account, bucket) pair takes three keys:
//!
//! 1. the budget hash. `kind` is `known` or `unlimited`, and a missing
//!    `kind` means unknown. `limit`, `remaining` (the estimate) and `reset`
//!    (epoch ms) describe the window. `observed_used` and
//!    `observed_remaining` come from the newest applied observation, and
//!    `cost` is the smallest spend of one request seen in this window.
//! 2. the lease set: a sorted set of reservation ids scored by the epoch ms
//!    at which each reservation lapses, so a crashed process's
//!    reservations stop counting by themselves;
//! 3. the account hash: `cooldown` (epoch ms), `strikes` and `unlimited`.
//!
//! Times are epoch milliseconds of the caller's clock. Key lifetimes are
//! set with PEXPIRE (relative), so the Redis server's own clock only
//! measures durations.

use redis::Script;

/// Functions shared by every script. Numbers travel as decimal strings and
/// stay below 2^53, so Lua's doubles hold them exactly.
const COMMON: &str = r#"
-- Reads the state of one (account, bucket) pair at time `now`.
local function load_state(budget_key, lease_key, account_key, now)
  local b = redis.call('HMGET', budget_key,
    'kind', 'limit', 'remaining', 'reset', 'observed_used', 'observed_remaining', 'cost')
  local a = redis.call('HMGET', account_key, 'cooldown', 'strikes', 'unlimited')
  local s = {}
  -- A bucket not yet stated of an account marked unlimited is unlimited.
  s.kind = b[1] or (a[3] and 'unlimited') or 'unknown'
  s.limit = tonumber(b[2]) or 0
  s.remaining = tonumber(b[3]) or 0
  s.reset = tonumber(b[4]) or 0
  s.observed_used = tonumber(b[5])
  s.observed_remaining = tonumber(b[6])
  s.cost = tonumber(b[7])
  s.cooldown = tonumber(a[1]) or 0
  s.strikes = tonumber(a[2]) or 0
  -- Reservations whose lease lapsed at or before `now` no longer count.
  s.in_flight = redis.call('ZCOUNT', lease_key, '(' .. now, '+inf')
  return s
end

-- The same decision as BudgetView::admits. Returns a code and a time:
-- 0 admit, 1 busy, 2 exhausted until the time, 3 cooling down until it.
local function admits(s, floor, now)
  if s.cooldown > now then
    return 3, s.cooldown
  end
  if s.strikes > 0 and s.in_flight > 0 then
    -- Probation after a secondary limit: one request at a time.
    return 1, 0
  end
  if s.kind == 'unlimited' then
    return 0, 0
  end
  if s.kind == 'unknown' or now >= s.reset then
    -- Nothing is known, or the window rolled over: one request at a time
    -- until a response states the budget.
    if s.in_flight == 0 then return 0, 0 end
    return 1, 0
  end
  local cost = math.max(s.cost or 1, 1)
  -- Budget held by reservations in flight counts as spent.
  local spendable = math.max(s.remaining - s.in_flight * (s.cost or 1), 0)
  spendable = math.max(spendable - floor, 0)
  if spendable >= cost then
    return 0, 0
  end
  if s.in_flight > 0 and math.max(s.remaining - floor, 0) >= cost then
    -- The rest is reserved; a response in flight states what is left.
    return 1, 0
  end
  return 2, s.reset
end

-- The same merge as apply_observation: headers replace the estimate unless
-- they are older than the newest applied observation (an earlier window,
-- or less spent within the same window). Returns whether the observation
-- was applied, and the spend since the previous one in the same window.
local function apply_observation(s, o, tolerance)
  local spent = nil
  if s.kind == 'known' then
    if o.reset + tolerance < s.reset then
      return false, nil
    end
    if math.abs(o.reset - s.reset) <= tolerance then
      local stale
      if o.used and s.observed_used then
        stale = o.used < s.observed_used
      else
        stale = s.observed_remaining ~= nil and o.remaining > s.observed_remaining
      end
      if stale then
        return false, nil
      end
      if s.observed_remaining then
        spent = math.max(s.observed_remaining - o.remaining, 0)
      end
    end
  end
  if spent == nil then
    -- Each window starts a new cost estimate.
    s.cost = nil
  end
  s.kind = 'known'
  s.limit = o.limit
  s.remaining = o.remaining
  s.reset = o.reset
  s.observed_used = o.used
  s.observed_remaining = o.remaining
  return true, spent
end

-- Writes the budget back and sets its lifetime: `margin` ms past the reset
-- for a known budget, `unlimited_ttl` ms for an unlimited one.
local function save(budget_key, s, now, margin, unlimited_ttl, max_ttl)
  if s.kind == 'unknown' then
    return
  end
  -- One HSET for every field that has a value, one HDEL for the rest.
  local set = {'kind', s.kind, 'limit', s.limit, 'remaining', s.remaining, 'reset', s.reset}
  local unset = {}
  for _, field in ipairs({'observed_used', 'observed_remaining', 'cost'}) do
    if s[field] then
      set[#set + 1] = field
      set[#set + 1] = s[field]
    else
      unset[#unset + 1] = field
    end
  end
  redis.call('HSET', budget_key, unpack(set))
  if #unset > 0 then
    redis.call('HDEL', budget_key, unpack(unset))
  end
  local ttl = unlimited_ttl
  if s.kind == 'known' then
    ttl = math.min(math.max(s.reset - now, 0) + margin, max_ttl)
  end
  redis.call('PEXPIRE', budget_key, ttl)
end

-- Extends a key's lifetime to at least `ttl` ms.
local function keep_for(key, ttl)
  local current = redis.call('PTTL', key)
  if current < ttl then
    redis.call('PEXPIRE', key, ttl)
  end
end

-- Appends the eight numbers of a view to `out`: kind (0 unknown,
-- 1 unlimited, 2 known), limit, remaining, reset, in flight, cooldown end,
-- probation (0 or 1) and request cost.
local function push_view(out, s)
  local kind = 0
  if s.kind == 'unlimited' then kind = 1 elseif s.kind == 'known' then kind = 2 end
  local probation = 0
  if s.strikes > 0 then probation = 1 end
  for _, value in ipairs({kind, s.limit, s.remaining, s.reset, s.in_flight,
      s.cooldown, probation, s.cost or 1}) do
    out[#out + 1] = value
  end
  return out
end

-- Reads an optional number: the empty string means none.
local function optional(value)
  if value == '' then return nil end
  return tonumber(value)
end
"#;

/// Views: KEYS are triples (budget, lease set, account), ARGV[1] is now.
/// Returns the eight numbers of `push_view` per triple.
const VIEW: &str = r#"
local now = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS, 3 do
  push_view(out, load_state(KEYS[i], KEYS[i + 1], KEYS[i + 2], now))
end
return out
"#;

/// Reserves one unit. ARGV: now, floor, reservation id, lapse time of the
/// reservation, lifetime of the lease set in ms. Returns {code, time} as
/// `admits` does, then the view after the call, and adds the reservation
/// only on admit.
const RESERVE: &str = r#"
local now = tonumber(ARGV[1])
local floor = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local s = load_state(KEYS[1], KEYS[2], KEYS[3], now)
local code, at = admits(s, floor, now)
if code == 0 then
  redis.call('ZADD', KEYS[2], tonumber(ARGV[4]), ARGV[3])
  -- Every reservation lapses after the same time, so the newest one
  -- decides how long the set lives.
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[5]))
  s.in_flight = s.in_flight + 1
end
return push_view({code, at}, s)
"#;

/// Ends a reservation, as MemoryStore::settle_now does. ARGV: now,
/// reservation id (empty when it was not made here), sent, success,
/// answered without limits (each 0 or 1), then the observation's limit,
/// remaining, used and reset (empty strings when there is none), the
/// primary-limit end (empty when none), and the tolerance, margin,
/// unlimited lifetime and maximum lifetime in ms. Returns the view after
/// the settlement.
const SETTLE: &str = r#"
local now = tonumber(ARGV[1])
local sent = ARGV[3] == '1'
local success = ARGV[4] == '1'
local without_limits = ARGV[5] == '1'
local exhausted_until = optional(ARGV[10])
local tolerance = tonumber(ARGV[11])
local margin = tonumber(ARGV[12])
local unlimited_ttl = tonumber(ARGV[13])
local max_ttl = tonumber(ARGV[14])

if ARGV[2] ~= '' then
  redis.call('ZREM', KEYS[2], ARGV[2])
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local s = load_state(KEYS[1], KEYS[2], KEYS[3], now)
if success and s.strikes > 0 then
  -- A success ends the probation that followed a secondary limit.
  redis.call('HSET', KEYS[3], 'strikes', 0)
  s.strikes = 0
end

if ARGV[6] ~= '' then
  local o = {
    limit = tonumber(ARGV[6]),
    remaining = tonumber(ARGV[7]),
    used = optional(ARGV[8]),
    reset = tonumber(ARGV[9]),
  }
  local _, spent = apply_observation(s, o, tolerance)
  -- With nothing else in flight, the spend since the last observation is
  -- this request's. Another program may have spent some too, so the
  -- smallest spend is kept.
  if spent and spent >= 1 and s.in_flight == 0 then
    s.cost = math.min(s.cost or spent, spent)
  end
elseif sent then
  if s.kind == 'known' and now < s.reset then
    -- Without headers the request still counted.
    s.remaining = math.max(s.remaining - (s.cost or 1), 0)
  elseif s.kind == 'unknown' and without_limits then
    s.kind = 'unlimited'
  end
end

if exhausted_until then
  if s.kind ~= 'known' then s.limit = 0 end
  s.kind = 'known'
  s.remaining = 0
  s.reset = exhausted_until
  s.observed_remaining = 0
end
save(KEYS[1], s, now, margin, unlimited_ttl, max_ttl)
return push_view({}, s)
"#;

/// Applies limits observed outside a reservation. ARGV: now, limit,
/// remaining, used (empty when none), reset, then the tolerance, margin,
/// unlimited lifetime and maximum lifetime in ms. Returns the view after
/// the call.
const OBSERVE: &str = r#"
local now = tonumber(ARGV[1])
local s = load_state(KEYS[1], KEYS[2], KEYS[3], now)
local o = {
  limit = tonumber(ARGV[2]),
  remaining = tonumber(ARGV[3]),
  used = optional(ARGV[4]),
  reset = tonumber(ARGV[5]),
}
local applied = apply_observation(s, o, tonumber(ARGV[6]))
if applied then
  save(KEYS[1], s, now, tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]))
end
return push_view({}, s)
"#;

/// Marks an account unlimited and the bucket in KEYS[1] with it. ARGV:
/// the lifetime of the mark in ms.
///
/// NOTE: the in-memory store also turns the account's other known buckets
/// unlimited. The script cannot name those keys, so they stay as they are
/// until they expire or a response states them.
const MARK_UNLIMITED: &str = r#"
local ttl = tonumber(ARGV[1])
redis.call('HSET', KEYS[3], 'unlimited', 1)
keep_for(KEYS[3], ttl)
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'kind', 'unlimited')
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
"#;

/// Starts or extends a secondary-limit cooldown, as
/// MemoryStore::cool_down_now does. KEYS[1] is the account hash. ARGV:
/// now, the end given by the provider (empty when none), the base and
/// maximum cooldown, and how long the strikes are remembered past the
/// cooldown's end, in ms. Returns the end of the cooldown.
const COOL_DOWN: &str = r#"
local now = tonumber(ARGV[1])
local given = optional(ARGV[2])
local base = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local retention = tonumber(ARGV[5])
local a = redis.call('HMGET', KEYS[1], 'cooldown', 'strikes')
local cooldown = tonumber(a[1]) or 0
local strikes = tonumber(a[2]) or 0
-- Responses to requests sent before the current cooldown began count as
-- the same strike, so a burst does not escalate it.
if cooldown <= now or strikes == 0 then
  strikes = strikes + 1
end
local until_ms = given
if not until_ms then
  -- Doubles on each strike; eight doublings already pass the maximum.
  local doublings = math.min(strikes - 1, 8)
  until_ms = now + math.min(base * 2 ^ doublings, max_wait)
end
cooldown = math.max(cooldown, until_ms)
redis.call('HSET', KEYS[1], 'cooldown', cooldown, 'strikes', strikes)
keep_for(KEYS[1], math.max(cooldown - now, 0) + retention)
return cooldown
"#;

/// The compiled scripts. `Script` sends EVALSHA and falls back to EVAL
/// when the server does not have the script, as after a restart.
pub(crate) struct Scripts {
    pub(crate) view: Script,
    pub(crate) reserve: Script,
    pub(crate) settle: Script,
    pub(crate) observe: Script,
    pub(crate) mark_unlimited: Script,
    pub(crate) cool_down: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        let with_common = |body: &str| Script::new(&format!("{COMMON}\n{body}"));
        Self {
            view: with_common(VIEW),
            reserve: with_common(RESERVE),
            settle: with_common(SETTLE),
            observe: with_common(OBSERVE),
            mark_unlimited: with_common(MARK_UNLIMITED),
            cool_down: with_common(COOL_DOWN),
        }
    }
}

impl std::fmt::Debug for Scripts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scripts").finish_non_exhaustive()
    }
}
