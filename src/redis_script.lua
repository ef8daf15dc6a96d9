-- libratetrack: one atomic decision over every window of one model.
-- KEYS[1]: the model's hash, "{prefix:model}" (one key: Redis Cluster safe).
-- ARGV:  1 op, 2 input tokens, 3 output tokens, 4 limits fingerprint,
--        5 update ("1"), 6 time argument (settle: the grant's time; block:
--        ms from now; observe: ms until the reset), 7-8 granted input/output
--        (settle), 9 observed unit (r t i o), 10 observed remaining,
--        11 observed limit, 12 ttl (ms), 13 window count, then per window:
--        name, width_ms, ring, limit (-1: none), unit (r t i o), day_end
--        (a calendar-day window: the client's next local midnight, Unix ms;
--        0 for a sliding window).
-- Fields: "fp" (the limits' fingerprint); "pv" (what the provider said,
-- only once it said something: "blocked_until,t,r,u,l,t,r,u,l,..." with a
-- cap's until, remaining, used since and the provider's limit per unit r t
-- i o); per sliding window W: "W:h" (newest bucket index), "W:u" (sum of the
-- counted buckets), "W:<index>" (a bucket); per calendar window W: "W:e"
-- (day end), "W:u" (used this day). Fields are written only when they
-- change, and the TTL is renewed when a bucket turns over: a hot model
-- costs TIME, one HMGET and one HSET.
-- The same arithmetic as src/sliding_window.cc and src/window_set.cc, on
-- the server's clock.
-- Returns {code, wait_ms, now_ms, ...}: code 0 ok, 1 limited, -3 too large,
-- -2 limits conflict (4th element: the stored fingerprint); "stats" adds
-- each window's used count, the block's remaining ms, and per unit
-- (r t i o) the cap's remaining (-1: none), ms to its reset, and limit.
local key = KEYS[1]
-- Integers as digits: Lua's default number format would write 1e+15.
local function d(x) return string.format('%d', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local op = ARGV[1]
if op == 'reset' then
  redis.call('DEL', key)
  return {0, 0, now}
end
local cin, cout = tonumber(ARGV[2]), tonumber(ARGV[3])
local fp = ARGV[4]
local update = ARGV[5] == '1'
local targ = tonumber(ARGV[6])
local ttl = tonumber(ARGV[12])
local n = tonumber(ARGV[13])
local units = {'r', 't', 'i', 'o'}
local function cost_of(u, i_, o_)
  if u == 'r' then return 1 elseif u == 'i' then return i_ elseif u == 'o' then return o_ end
  return i_ + o_
end
local W = {}
local fields = {'fp', 'pv'}
local base = #fields
for i = 1, n do
  local b = 13 + (i - 1) * 6
  local w = {name = ARGV[b + 1], width = tonumber(ARGV[b + 2]), ring = tonumber(ARGV[b + 3]),
             limit = tonumber(ARGV[b + 4]), unit = ARGV[b + 5], day_end = tonumber(ARGV[b + 6])}
  w.cal = w.day_end > 0
  w.k = math.floor(now / w.width)
  W[i] = w
  if w.cal then
    fields[#fields + 1] = w.name .. ':e'
    fields[#fields + 1] = w.name .. ':u'
    fields[#fields + 1] = 'fp'  -- placeholder: keeps three fields a window
  else
    fields[#fields + 1] = w.name .. ':h'
    fields[#fields + 1] = w.name .. ':u'
    fields[#fields + 1] = w.name .. ':' .. w.k
  end
end
local vals = redis.call('HMGET', key, unpack(fields))
local stored = vals[1]
if stored == false then stored = nil end  -- a missing field comes back as false
if stored and stored ~= fp and (op == 'acquire' or op == 'check') and not update then
  return {-2, 0, now, stored}
end
local blocked = 0
local caps = {}
for _, u in ipairs(units) do caps[u] = {t = 0, r = 0, u = 0, l = 0} end
local pv_present = vals[2] ~= false
if pv_present then
  local p = {}
  for x in string.gmatch(vals[2], '[^,]+') do p[#p + 1] = tonumber(x) or 0 end
  blocked = p[1] or 0
  for j, u in ipairs(units) do
    local o = 1 + (j - 1) * 4
    caps[u] = {t = p[o + 1] or 0, r = p[o + 2] or 0, u = p[o + 3] or 0, l = p[o + 4] or 0}
  end
end
local pv_dirty = false
local touched = vals[1] == false  -- a new key: set its TTL
local sets = {}
local function set(f, v) sets[#sets + 1] = f; sets[#sets + 1] = d(v) end
for i = 1, n do
  local w = W[i]
  local o = base + (i - 1) * 3
  if w.cal then
    local e = tonumber(vals[o + 1])
    local u = tonumber(vals[o + 2]) or 0
    w.moved = false
    if e == nil or now >= e then
      u = 0
      e = w.day_end
      while e <= now do e = e + 86400000 end  -- the client's clock lags
      w.moved = true
      touched = true
    end
    w.e, w.u, w.u0 = e, u, u
  else
    local h = tonumber(vals[o + 1])
    local u = tonumber(vals[o + 2]) or 0
    local c = tonumber(vals[o + 3]) or 0
    w.moved = false
    if h == nil then
      h, u, c = w.k, 0, 0
      w.moved = true
      touched = true
    elseif w.k > h then
      w.moved = true
      touched = true
      local old = {}
      if w.k - h >= w.ring then
        for j = h - w.ring + 1, h do old[#old + 1] = w.name .. ':' .. j end
        u = 0
      else
        for j = h + 1, w.k do old[#old + 1] = w.name .. ':' .. (j - w.ring) end
        local oc = redis.call('HMGET', key, unpack(old))
        for j = 1, #oc do u = u - (tonumber(oc[j]) or 0) end
        if u < 0 then u = 0 end
      end
      redis.call('HDEL', key, unpack(old))
      h, c = w.k, 0
    elseif w.k < h then
      -- The server's clock went back: book in the newest bucket (conservative).
      c = tonumber(redis.call('HGET', key, w.name .. ':' .. h)) or 0
    end
    w.h, w.u, w.c, w.u0, w.c0 = h, u, c, u, c
  end
end
local function book(i_, o_)
  for i = 1, n do
    local w = W[i]
    local c = cost_of(w.unit, i_, o_)
    w.u = w.u + c
    if not w.cal then w.c = w.c + c end
  end
  for _, u in ipairs(units) do
    if caps[u].t > now then
      caps[u].u = caps[u].u + cost_of(u, i_, o_)
      pv_dirty = true
    end
  end
end
local result = {0, 0, now}
if op == 'acquire' or op == 'check' then
  local fits, wait = true, 1
  for i = 1, n do
    local w = W[i]
    local c = cost_of(w.unit, cin, cout)
    if w.limit >= 0 then
      if c > w.limit then return {-3, 0, now} end
      if w.u > w.limit or c > w.limit - w.u then
        fits = false
        local at
        if w.cal then
          at = w.e
        else
          local names = {}
          for j = w.h - w.ring + 1, w.h do names[#names + 1] = w.name .. ':' .. j end
          local counts = redis.call('HMGET', key, unpack(names))
          counts[#counts] = w.c  -- the newest bucket, as advanced above
          local remaining = w.u
          at = (w.h + w.ring) * w.width
          for j = 1, #counts do
            remaining = remaining - (tonumber(counts[j]) or 0)
            if remaining <= w.limit and c <= w.limit - remaining then
              at = (w.h + j) * w.width
              break
            end
          end
        end
        if at - now > wait then wait = at - now end
      end
    end
  end
  if blocked > now then
    fits = false
    if blocked - now > wait then wait = blocked - now end
  end
  for _, u in ipairs(units) do
    local p = caps[u]
    local c = cost_of(u, cin, cout)
    if p.t > now and (p.u > p.r or c > p.r - p.u) then
      fits = false
      if p.t - now > wait then wait = p.t - now end
    end
  end
  if not fits then
    result = {1, wait, now}
  elseif op == 'acquire' then
    book(cin, cout)
  end
elseif op == 'record' then
  book(cin, cout)
elseif op == 'settle' then
  local at = targ
  local gin, gout = tonumber(ARGV[7]), tonumber(ARGV[8])
  for i = 1, n do
    local w = W[i]
    local delta = cost_of(w.unit, cin, cout) - cost_of(w.unit, gin, gout)
    if w.unit ~= 'r' and delta ~= 0 then
      if w.cal then
        if at < w.e and at >= w.e - 90000000 then
          w.u = math.max(w.u + delta, 0)
        end
      else
        local j = math.floor(at / w.width)
        if j > w.h then j = w.h end
        if w.h - j < w.ring then
          local f = w.name .. ':' .. j
          local cj = (j == w.h) and w.c or (tonumber(redis.call('HGET', key, f)) or 0)
          if delta < 0 and -delta > cj then delta = -cj end
          w.u = math.max(w.u + delta, 0)
          if j == w.h then w.c = cj + delta else set(f, cj + delta) end
        end
      end
    end
  end
elseif op == 'block' then
  if now + targ > blocked then blocked = now + targ end
  pv_dirty, touched = true, true
elseif op == 'observe' then
  local p = caps[ARGV[9]]
  if targ >= 0 then  -- a cap: remaining until the reset; else a limit only
    p.t, p.r, p.u = now + targ, tonumber(ARGV[10]), 0
  end
  if tonumber(ARGV[11]) > 0 then p.l = tonumber(ARGV[11]) end
  pv_dirty, touched = true, true
elseif op == 'stats' then
  for i = 1, n do result[#result + 1] = W[i].u end
  result[#result + 1] = math.max(blocked - now, 0)
  for _, u in ipairs(units) do
    local p = caps[u]
    if p.t > now then
      result[#result + 1] = math.max(p.r - p.u, 0)
      result[#result + 1] = p.t - now
    else
      result[#result + 1] = -1
      result[#result + 1] = 0
    end
    result[#result + 1] = p.l
  end
end
for i = 1, n do
  local w = W[i]
  if w.cal then
    if w.moved then set(w.name .. ':e', w.e) end
    if w.moved or w.u ~= w.u0 then set(w.name .. ':u', w.u) end
  else
    if w.moved then set(w.name .. ':h', w.h) end
    if w.moved or w.u ~= w.u0 then set(w.name .. ':u', w.u) end
    if w.moved or w.c ~= w.c0 then set(w.name .. ':' .. w.h, w.c) end
  end
end
if pv_dirty then
  local p = {d(blocked)}
  for _, u in ipairs(units) do
    local c = caps[u]
    p[#p + 1] = d(c.t) .. ',' .. d(c.r) .. ',' .. d(c.u) .. ',' .. d(c.l)
  end
  sets[#sets + 1] = 'pv'
  sets[#sets + 1] = table.concat(p, ',')
end
if op ~= 'stats' and (stored == nil or update) then
  sets[#sets + 1] = 'fp'
  sets[#sets + 1] = fp
end
if #sets > 0 then redis.call('HSET', key, unpack(sets)) end
if touched then redis.call('PEXPIRE', key, math.max(ttl, blocked - now + 1000)) end
return result
