-- libratetrack: one atomic decision over every window of one model.
-- KEYS[1]: the model's hash, "{prefix:model}" (one key: Redis Cluster safe).
-- ARGV:  1 op, 2 the head: the limits' fingerprint, "\n", the windows'
--        names ("r60,t60,rc86400,..."), "\n"; 3 update ("1"), 4 observed
--        unit (r t i o), 5 numbers,
--        packed as little-endian doubles (exact up to 2^53; the client clamps
--        there): input tokens, output tokens, the time argument (settle: the
--        grant's time; block: ms from now; observe: ms until the reset),
--        granted input, granted output (settle), observed remaining,
--        observed limit, ttl (ms), the window count n, then per window:
--        width_ms, ring, limit (-1: none), unit (0 r, 1 t, 2 i, 3 o),
--        day_end (a calendar-day window: the client's next local midnight,
--        Unix ms; 0 for a sliding window); 6 and 7 the struct formats of the
--        numbers and of the state ("<ddd..."), so that no call builds them;
--        acquire, check and record only, optionally: 8 the number of more
--        decisions of the same kind merged into this call, 9 their input and
--        output tokens (packed doubles, two per decision); 10 (any value,
--        after 8 and 9): take the full path (tests only).
-- Fields: "s": the head it was written for (the fingerprint is the one of
-- whoever first used the model, or replaced it with limits=update; empty
-- for none yet), then the windows' state, packed: per window three doubles,
-- sliding: newest bucket index, its count, the sum of the counted buckets;
-- calendar: day end, used this day, 0; then, only when "p" exists, its
-- active_until as one more double. "p" (what the provider said, only once it
-- said something: "active_until,blocked_until,t,r,u,l,t,r,u,l,..." with a
-- cap's until, remaining, used since and the provider's limit per unit
-- r t i o; active_until, first, is the latest of blocked_until and the caps'
-- untils: once it has passed, nothing the provider said can refuse or book
-- anything, and the hot path is taken again); per
-- sliding window W, "W:<index>": an older bucket's count, written when the
-- newest bucket moves on.
-- Hot path: TIME, one HGET, one HSET of the packed state, however many
-- decisions are merged into the call; numbers cross between Redis and Lua
-- as packed doubles (struct), not as decimal text. The TTL is renewed when
-- a bucket turns over.
-- The same arithmetic as src/sliding_window.cc and src/window_set.cc, on
-- the server's clock.
-- Returns now_ms alone (an integer) when every decision of an acquire, check
-- or record was admitted (code 0, no wait: converting a table costs Redis
-- about 6,000 instructions); else
-- {code, wait_ms, now_ms, ...}: code 0 ok, 1 limited, -3 too large,
-- -2 limits conflict (4th element: the stored fingerprint); "stats" adds
-- each window's used count, the block's remaining ms, and per unit
-- (r t i o) the cap's remaining (-1: none), ms to its reset, and limit; a
-- merged call adds code and wait_ms per further decision (a conflict, -2,
-- is the answer for all of them).
local key = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local op = ARGV[1]
if op == 'reset' then
  redis.call('DEL', key)
  return {0, 0, now}
end
local blob = redis.call('HGET', key, 's')
local head = ARGV[2]
local update = ARGV[3] == '1'
local numbers = ARGV[5]
-- L[1..9]: cin, cout, targ, gin, gout, observed remaining and limit, ttl, n;
-- then five per window from L[10].
local L = {struct.unpack(ARGV[6], numbers)}
local cin, cout, targ, n = L[1], L[2], L[3], L[9]
local S
local stored = nil   -- the stored fingerprint, when it differs from ours
local write_head = head
local size = #head + 24 * n  -- of "s" without the provider's moment
if blob and (#blob == size or #blob == size + 8) and string.find(blob, head, 1, true) == 1 then
  -- The common case: our limits, our windows.
  S = {struct.unpack(ARGV[7], blob, #head + 1)}
  -- The hot path: acquires, checks or records (one, or several merged),
  -- nothing said by the provider, every window in its current bucket (or
  -- day) and, but for records, room in every window for every decision;
  -- what the provider said counts as nothing once its active_until (the
  -- first number of "p") has passed: no block or cap then refuses, and
  -- booking leaves every cap as it is (book() only counts in live caps).
  -- Decided here exactly as the full path below decides them, in fewer Lua
  -- steps (each costs Redis about 90 instructions); anything else (a bucket
  -- or a day turning over, no room: the wait to compute) goes the full
  -- path. Merged decisions are taken together: acquires in order all have
  -- room exactly when their sum has (costs are whole numbers, exact in
  -- doubles below 2^53), checks (which book nothing) when their largest
  -- cost of each unit has. ARGV[10] forces the full path (the tests
  -- compare the two).
  if not ARGV[10] and (op == 'acquire' or op == 'check' or op == 'record')
      and (#blob == size or struct.unpack('<d', blob, size + 1) <= now) then
    -- What the decisions take of requests, tokens, input, output.
    local x0, x1, xi, xo = 1, cin + cout, cin, cout
    local more = ARGV[8] and tonumber(ARGV[8]) or 0
    if more > 0 then
      local X = {struct.unpack(string.rep('<d', 2 * more), ARGV[9])}
      if op == 'check' then
        for j = 1, 2 * more, 2 do
          local ci, co = X[j], X[j + 1]
          if ci > xi then xi = ci end
          if co > xo then xo = co end
          if ci + co > x1 then x1 = ci + co end
        end
      else
        x0 = 1 + more
        for j = 1, 2 * more, 2 do xi, xo = xi + X[j], xo + X[j + 1] end
        x1 = xi + xo
      end
    end
    local fits = x1 < 9007199254740992  -- 2^53: sums stay exact
    for i = 1, fits and n or 0 do
      local b, s = 5 * i + 5, 3 * i - 2
      local unit = L[b + 3]
      local x = unit == 0 and x0 or unit == 1 and x1 or unit == 2 and xi or xo
      local lim, u = L[b + 2], nil
      if L[b + 4] > 0 then
        if now >= S[s] then fits = false break end
        u = S[s + 1]
      else
        local lo = S[s] * L[b]
        if now < lo or now >= lo + L[b] then fits = false break end
        u = S[s + 2]
      end
      if op ~= 'record' and lim >= 0 and (u > lim or x > lim - u) then fits = false break end
    end
    if fits then
      if op ~= 'check' then
        for i = 1, n do
          local b, s = 5 * i + 5, 3 * i - 2
          local unit = L[b + 3]
          local x = unit == 0 and x0 or unit == 1 and x1 or unit == 2 and xi or xo
          S[s + 1] = S[s + 1] + x
          if L[b + 4] == 0 then S[s + 2] = S[s + 2] + x end
        end
        if #blob == size then
          redis.call('HSET', key, 's', head .. struct.pack(ARGV[7], unpack(S, 1, 3 * n)))
        else
          redis.call('HSET', key, 's', head .. struct.pack(ARGV[7], unpack(S, 1, 3 * n)) ..
                     string.sub(blob, -8))
        end
      end
      return now  -- every decision admitted (cheaper for Redis than a table)
    end
  end
else
  local fp, names = string.match(head, '^(.-)\n(.-)\n$')
  S = {}
  for j = 1, 3 * n do S[j] = false end
  if blob then
    local sfp, snames, at = string.match(blob, '^(.-)\n(.-)\n()')
    if sfp and sfp ~= '' and sfp ~= fp then
      if (op == 'acquire' or op == 'check') and not update then
        return {-2, 0, now, sfp}
      end
      if not update then
        stored = sfp
        write_head = sfp .. '\n' .. names .. '\n'
      end
    end
    if snames then
      -- The windows changed (limits=update): keep the ones that stay.
      local old, k = {}, 0
      local olds = {struct.unpack(string.rep('<d', math.floor((#blob - at + 1) / 8)), blob, at)}
      for name in string.gmatch(snames, '[^,]+') do
        old[name] = k
        k = k + 1
      end
      local i = 0
      for name in string.gmatch(names, '[^,]+') do
        local o = old[name]
        if o and 3 * o + 3 < #olds then
          S[3 * i + 1], S[3 * i + 2], S[3 * i + 3] = olds[3 * o + 1], olds[3 * o + 2], olds[3 * o + 3]
        end
        i = i + 1
      end
    end
  end
  if op == 'stats' and not blob then write_head = '\n' .. names .. '\n' end
end
-- What a request costs each unit, indexed by unit + 1 (r t i o).
local cost = {1, cin + cout, cin, cout}
local fmt = string.format  -- '%d': Lua's default number format writes 1e+15
-- What the provider said, by unit r t i o (only when it said something).
local blocked = 0
local caps = nil
local pv_dirty = false
local said = redis.call('HGET', key, 'p')
if said or op == 'block' or op == 'observe' then
  caps = {}
  local p = {}
  if said then
    -- The first number, active_until, is derived: skipped.
    for x in string.gmatch(string.match(said, '^[^,]*,(.*)$') or '', '[^,]+') do
      p[#p + 1] = tonumber(x) or 0
    end
  end
  blocked = p[1] or 0
  for u = 0, 3 do
    local o = 1 + u * 4
    caps[u] = {t = p[o + 1] or 0, r = p[o + 2] or 0, u = p[o + 3] or 0, l = p[o + 4] or 0}
  end
end

-- Window i's name ("t60"), from the head; and the field of its bucket j.
local function window_name(i)
  return string.match(head, '\n' .. string.rep('[^,]*,', i - 1) .. '([^,\n]*)')
end
local function bucket_field(i, j) return window_name(i) .. ':' .. fmt('%d', j) end

-- Every window, advanced to now. S[3i-2], S[3i-1], S[3i]: h, c, u (sliding)
-- or e, u, 0 (calendar).
local sets = {}
local touched = not blob  -- a new key: set its TTL
local dirty = false
for i = 1, n do
  local b = 5 * i + 5  -- 10 + 5 * (i - 1)
  local s = 3 * i - 2
  local wd, rg, day_end = L[b], L[b + 1], L[b + 4]
  if day_end > 0 then
    local e = S[s]
    if not e or now >= e then
      e = day_end
      while e <= now do e = e + 86400000 end  -- the client's clock lags
      S[s], S[s + 1], S[s + 2] = e, 0, 0
      touched, dirty = true, true
    end
  else
    local k = math.floor(now / wd)
    local h, c, u = S[s], S[s + 1], S[s + 2]
    if not h then
      S[s], S[s + 1], S[s + 2] = k, 0, 0
      touched, dirty = true, true
    elseif k > h then
      -- The newest bucket moves on: the old one joins the ring as "W:<h>",
      -- and buckets that no longer count leave.
      local name = window_name(i)
      local old = {}
      if k - h >= rg then
        for j = h - rg + 1, h - 1 do old[#old + 1] = name .. ':' .. fmt('%d', j) end
        u = 0
      else
        if c ~= 0 then
          sets[#sets + 1] = name .. ':' .. fmt('%d', h)
          sets[#sets + 1] = fmt('%d', c)
        end
        for j = h + 1, k do old[#old + 1] = name .. ':' .. fmt('%d', j - rg) end
        local oc = redis.call('HMGET', key, unpack(old))
        for j = 1, #oc do u = u - (tonumber(oc[j]) or 0) end
        if u < 0 then u = 0 end
      end
      if #old > 0 then redis.call('HDEL', key, unpack(old)) end
      S[s], S[s + 1], S[s + 2] = k, 0, u
      touched, dirty = true, true
    end
    -- k < h: the server's clock went back; book in the newest bucket
    -- (conservative).
  end
end

-- Books cost `c` (by unit + 1) in every window and in the provider's caps.
local function book(c)
  for i = 1, n do
    local b = 5 * i + 5
    local s = 3 * i - 2
    local x = c[L[b + 3] + 1]
    S[s + 1] = S[s + 1] + x
    if L[b + 4] == 0 then S[s + 2] = S[s + 2] + x end
  end
  dirty = true
  if caps then
    for u = 0, 3 do
      if caps[u].t > now then
        caps[u].u = caps[u].u + c[u + 1]
        pv_dirty = true
      end
    end
  end
end

-- One decision: 'acquire' (books when it fits), 'check' or 'record' (books).
-- Returns the code (0 ok, 1 limited, -3 larger than a limit) and the wait.
local function decide(o, c)
  if o == 'record' then
    book(c)
    return 0, 0
  end
  local fits, wait = true, 1
  for i = 1, n do
    local b = 5 * i + 5
    local x = c[L[b + 3] + 1]
    local lim = L[b + 2]
    local calendar = L[b + 4] > 0
    local u = calendar and S[3 * i - 1] or S[3 * i]
    if lim >= 0 then
      if x > lim then return -3, 0 end
      if u > lim or x > lim - u then
        fits = false
        local at
        if calendar then
          at = S[3 * i - 2]
        else
          -- Oldest bucket first: bucket j stops counting at (j + ring) * width.
          local wd, rg, h = L[b], L[b + 1], S[3 * i - 2]
          local name = window_name(i)
          local fields = {}
          for j = h - rg + 1, h - 1 do fields[#fields + 1] = name .. ':' .. fmt('%d', j) end
          local counts = #fields > 0 and redis.call('HMGET', key, unpack(fields)) or {}
          counts[#counts + 1] = S[3 * i - 1]  -- the newest bucket
          local remaining = u
          at = (h + rg) * wd
          for j = 1, #counts do
            remaining = remaining - (tonumber(counts[j]) or 0)
            if remaining <= lim and x <= lim - remaining then
              at = (h + j) * wd
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
  if caps then
    for u = 0, 3 do
      local p = caps[u]
      local x = c[u + 1]
      if p.t > now and (p.u > p.r or x > p.r - p.u) then
        fits = false
        if p.t - now > wait then wait = p.t - now end
      end
    end
  end
  if not fits then return 1, wait end
  if o == 'acquire' then book(c) end
  return 0, 0
end

local result = {0, 0, now}
local all_ok = false
if op == 'acquire' or op == 'check' or op == 'record' then
  local code, wait = decide(op, cost)
  result[1], result[2] = code, wait
  -- Merged calls: ARGV[8] more decisions of the same kind, ARGV[9] their
  -- input and output tokens (packed doubles), decided in order after the
  -- first; each adds its code and wait to the result.
  local more = tonumber(ARGV[8] or '0') or 0
  if more > 0 then
    local X = {struct.unpack(string.rep('<d', 2 * more), ARGV[9])}
    for j = 1, more do
      local ci, co = X[2 * j - 1], X[2 * j]
      local c2, w2 = decide(op, {1, ci + co, ci, co})
      result[#result + 1] = c2
      result[#result + 1] = w2
      if c2 ~= 0 then code = c2 end
    end
  end
  all_ok = code == 0
elseif op == 'settle' then
  local at = targ
  local granted = {1, L[4] + L[5], L[4], L[5]}
  for i = 1, n do
    local b = 5 * i + 5
    local s = 3 * i - 2
    local unit = L[b + 3]
    local delta = cost[unit + 1] - granted[unit + 1]
    if unit ~= 0 and delta ~= 0 then
      dirty = true
      if L[b + 4] > 0 then
        if at < S[s] and at >= S[s] - 90000000 then
          S[s + 1] = math.max(S[s + 1] + delta, 0)
        end
      else
        local h = S[s]
        local j = math.floor(at / L[b])
        if j > h then j = h end
        if h - j < L[b + 1] then
          local cj = S[s + 1]
              if j ~= h then
            cj = tonumber(redis.call('HGET', key, bucket_field(i, j))) or 0
          end
          if delta < 0 and -delta > cj then delta = -cj end
          S[s + 2] = math.max(S[s + 2] + delta, 0)
          if j == h then
            S[s + 1] = cj + delta
          else
            sets[#sets + 1] = bucket_field(i, j)
            sets[#sets + 1] = fmt('%d', cj + delta)
          end
        end
      end
    end
  end
elseif op == 'block' then
  if now + targ > blocked then blocked = now + targ end
  pv_dirty, touched = true, true
elseif op == 'observe' then
  local p = caps[({r = 0, t = 1, i = 2, o = 3})[ARGV[4]]]
  if targ >= 0 then  -- a cap: remaining until the reset; else a limit only
    p.t, p.r, p.u = now + targ, L[6], 0
  end
  if L[7] > 0 then p.l = L[7] end
  pv_dirty, touched = true, true
elseif op == 'stats' then
  for i = 1, n do
    result[#result + 1] = L[5 * i + 9] > 0 and S[3 * i - 1] or S[3 * i]
  end
  result[#result + 1] = math.max(blocked - now, 0)
  for u = 0, 3 do
    local p = caps and caps[u] or {t = 0, r = 0, u = 0, l = 0}
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

-- Whenever "p" exists, "s" ends with its active_until as one more packed
-- double: the short path reads that one field.
local active = said and (tonumber(string.match(said, '^[^,]*')) or 0)
if pv_dirty then
  active = blocked
  local p = {'', fmt('%d', blocked)}
  for u = 0, 3 do
    local c = caps[u]
    if c.t > active then active = c.t end
    p[#p + 1] = fmt('%d,%d,%d,%d', c.t, c.r, c.u, c.l)
  end
  p[1] = fmt('%d', active)
  sets[#sets + 1] = 'p'
  sets[#sets + 1] = table.concat(p, ',')
end
if dirty or pv_dirty or (update and stored == nil and blob and string.sub(blob, 1, #head) ~= head) then
  sets[#sets + 1] = 's'
  sets[#sets + 1] = write_head .. struct.pack(ARGV[7], unpack(S, 1, 3 * n)) ..
      (active and struct.pack('<d', active) or '')
end
if #sets == 2 then
  redis.call('HSET', key, sets[1], sets[2])
elseif #sets > 0 then
  redis.call('HSET', key, unpack(sets))
end
if touched then redis.call('PEXPIRE', key, math.max(L[8], blocked - now + 1000)) end
if all_ok then return now end
return result
