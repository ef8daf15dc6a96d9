-- libratetrack: one atomic decision over every window of one model.
-- KEYS[1]: the model's hash, "{prefix:model}" (one key: Redis Cluster safe).
-- ARGV: op, tokens, limits fingerprint, update ("1"), settle time (ms),
--       settle delta, settle top-up ("1"), ttl (ms), window count, then per
--       window: name, width_ms, ring, limit (-1: none), unit ("r" or "t").
-- Fields: "fp" (the limits' fingerprint); per window W: "W:h" (newest
-- bucket index), "W:u" (sum of the counted buckets), "W:<index>" (a bucket).
-- The same arithmetic as src/sliding_window.cc, on the server's clock.
-- Returns {code, wait_ms, now_ms, ...}: code 0 ok, 1 limited, -3 too large,
-- -2 limits conflict (4th element: the stored fingerprint); "stats" adds
-- each window's used count.
local key = KEYS[1]
-- Integers as digits: Lua's default number format would write 1e+15.
local function d(x) return string.format('%d', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local op = ARGV[1]
local tokens = tonumber(ARGV[2])
local fp = ARGV[3]
local update = ARGV[4] == '1'
local ttl = tonumber(ARGV[8])
local n = tonumber(ARGV[9])
if op == 'reset' then
  redis.call('DEL', key)
  return {0, 0, now}
end
local W = {}
local fields = {'fp'}
for i = 1, n do
  local b = 9 + (i - 1) * 5
  local w = {name = ARGV[b + 1], width = tonumber(ARGV[b + 2]), ring = tonumber(ARGV[b + 3]),
             limit = tonumber(ARGV[b + 4]), tok = ARGV[b + 5] == 't'}
  w.k = math.floor(now / w.width)
  W[i] = w
  fields[#fields + 1] = w.name .. ':h'
  fields[#fields + 1] = w.name .. ':u'
  fields[#fields + 1] = w.name .. ':' .. w.k
end
local vals = redis.call('HMGET', key, unpack(fields))
local stored = vals[1]
if stored == false then stored = nil end  -- a missing field comes back as false
if stored and stored ~= fp and op ~= 'stats' and op ~= 'record' and op ~= 'settle' and not update then
  return {-2, 0, now, stored}
end
local sets = {}
for i = 1, n do
  local w = W[i]
  local h = tonumber(vals[2 + (i - 1) * 3])
  local u = tonumber(vals[3 + (i - 1) * 3]) or 0
  local c = tonumber(vals[4 + (i - 1) * 3]) or 0
  if h == nil then
    h, u, c = w.k, 0, 0
  elseif w.k > h then
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
  w.h, w.u, w.c = h, u, c
  w.cost = w.tok and tokens or 1
  sets[#sets + 1] = w.name .. ':h'
  sets[#sets + 1] = d(h)
  sets[#sets + 1] = w.name .. ':u'
  sets[#sets + 1] = d(u)
end
local result = {0, 0, now}
if op == 'acquire' or op == 'check' then
  local fits = true
  for i = 1, n do
    local w = W[i]
    if w.limit >= 0 then
      if w.cost > w.limit then return {-3, 0, now} end
      if w.u > w.limit or w.cost > w.limit - w.u then fits = false end
    end
  end
  if not fits then
    local wait = 1
    for i = 1, n do
      local w = W[i]
      if w.limit >= 0 and (w.u > w.limit or w.cost > w.limit - w.u) then
        local names = {}
        for j = w.h - w.ring + 1, w.h do names[#names + 1] = w.name .. ':' .. j end
        local counts = redis.call('HMGET', key, unpack(names))
        local remaining = w.u
        local at = (w.h + w.ring) * w.width
        for j = 1, #counts do
          remaining = remaining - (tonumber(counts[j]) or 0)
          if remaining <= w.limit and w.cost <= w.limit - remaining then
            at = (w.h - w.ring + j + w.ring) * w.width
            break
          end
        end
        if at - now > wait then wait = at - now end
      end
    end
    result = {1, wait, now}
  elseif op == 'acquire' then
    for i = 1, n do
      local w = W[i]
      sets[(i - 1) * 4 + 4] = d(w.u + w.cost)
      sets[#sets + 1] = w.name .. ':' .. w.h
      sets[#sets + 1] = d(w.c + w.cost)
    end
  end
elseif op == 'record' then
  for i = 1, n do
    local w = W[i]
    sets[(i - 1) * 4 + 4] = d(w.u + w.cost)
    sets[#sets + 1] = w.name .. ':' .. w.h
    sets[#sets + 1] = d(w.c + w.cost)
  end
elseif op == 'settle' then
  local at = tonumber(ARGV[5])
  local delta = tonumber(ARGV[6])
  local top_up = ARGV[7] == '1'
  for i = 1, n do
    local w = W[i]
    if w.tok then
      local j = math.floor(at / w.width)
      if j > w.h then j = w.h end
      if w.h - j < w.ring then
        local f = w.name .. ':' .. j
        local cj = tonumber(redis.call('HGET', key, f)) or 0
        local delta_i = delta
        if not top_up then
          if delta_i > cj then delta_i = cj end
          delta_i = -delta_i
        end
        sets[(i - 1) * 4 + 4] = d(math.max(w.u + delta_i, 0))
        sets[#sets + 1] = f
        sets[#sets + 1] = d(cj + delta_i)
      end
    end
  end
elseif op == 'stats' then
  for i = 1, n do result[#result + 1] = W[i].u end
end
if op ~= 'stats' and (stored == nil or update) then
  sets[#sets + 1] = 'fp'
  sets[#sets + 1] = fp
end
redis.call('HSET', key, unpack(sets))
redis.call('PEXPIRE', key, ttl)
return result
