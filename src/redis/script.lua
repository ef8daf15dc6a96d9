-- libratetrack: one atomic decision over every window of one model.
-- KEYS[1]: the model's hash, "{prefix:model}" (one key: Redis Cluster safe).
-- ARGV[1]: four little-endian doubles: the digest of the client's limits (a
--   52-bit hash of the head below and of every window's geometry and
--   limit), the op (0 acquire, 1 check, 2 record, 3 settle, 4 stats, 5 reset,
--   6 block, 7 observe; 16 more: take the full path, tests only), input
--   tokens, output tokens; and, only when the client saw the server's clock
--   step lately, a fifth: the client's estimate of the server's time (Unix
--   ms) as it would be without the step (the hot path reads four).
-- ARGV[2], optional: more decisions of the same kind merged into this call,
--   their input and output tokens (two doubles each; may be empty).
-- ARGV[3] and ARGV[4], the full form (settle, stats, reset, block, observe
--   always; acquire, check and record only when the script asked for it):
--   the numbers, packed doubles: update (1: limits=update), the observed
--   unit (0 r, 1 t, 2 i, 3 o), the time argument (settle: the grant's time;
--   block: ms from now; observe: ms until the reset), granted input, granted
--   output (settle), observed remaining, observed limit, ttl (ms), the window
--   count n, then per window: width_ms, ring, limit (-1: none), unit (0 r,
--   1 t, 2 i, 3 o), day_end (a calendar-day window: the client's next local
--   midnight, Unix ms; 0 for a sliding window); and the head: the limits'
--   fingerprint, "\n", the windows' names ("r60,t60,rc86400,..."), "\n".
-- Without the full form (acquire, check, record: the common case), the
-- script works from what it stored, which the digest matches; when it does
-- not (a new or flushed key, other limits) or a calendar day begins (its
-- end is the client's to say), it returns -4 and the client sends the call
-- again in the full form. Redis reads a few dozen bytes a call, not
-- hundreds (arguments cost Redis about 13 instructions a byte).
-- Fields (numbers as packed little-endian doubles):
-- "s", the hot state, ten numbers whatever the windows: the digest of the
--   limits it is for (0: none), hot_from, hot_until (while hot_from <= now <
--   hot_until every window is in its current bucket or day and nothing the
--   provider said is in force), per unit r t i o the least room of its
--   windows at the base (a window's room: its limit, or 2^53 without one,
--   less what its counted buckets or its day held when "c" was written;
--   2^53 for a unit without windows), then what was booked since the base:
--   requests, input tokens, output tokens (tokens: their sum). A window
--   holds its base count plus what its unit booked since.
-- "c", the cold state: ttl, the window count n, per window: width_ms, ring,
--   calendar (1 or 0), newest bucket index (calendar: day end), the older
--   counted buckets' sum (calendar: 0), limit (-1: none), unit (0 r, 1 t,
--   2 i, 3 o), the base count (what its counted buckets or its day held);
--   then the head it was written for (the fingerprint is the one of whoever
--   first used the model, or replaced it with limits=update; empty for none
--   yet).
-- "k", only once the server's clock stepped: the key's skew (a double). The
--   key's time is the server's (TIME) plus the skew: it never goes back
--   (after a backward step it goes on from its newest bucket's start) and,
--   when the client sends its estimate, never runs more than a second
--   ahead of it (a forward step is not followed). Every time in the
--   state is the key's, but hot_from and hot_until in "s", which the hot
--   path compares with TIME, less the skew; so is the now_ms returned (the
--   server's time: the client's tickets and its watch on the server's
--   clock), and settle's time argument.
-- "p" (what the provider said, only once it said something:
--   "active_until,blocked_until,t,r,u,l,t,r,u,l,..." with a cap's until,
--   remaining, used since and the provider's limit per unit r t i o;
--   active_until, first, is the latest of blocked_until and the caps'
--   untils: once it has passed, nothing the provider said can refuse or book
--   anything, and the hot path is taken again).
-- Per sliding window W, "W:<index>": an older bucket's count, written when
--   the newest bucket moves on.
-- Hot path: TIME, one HGET, one HSET of "s" (ten numbers unpacked and
-- packed, four comparisons), however many decisions are merged into the
-- call. The TTL is renewed when a bucket turns over.
-- The same arithmetic as src/sliding_window.cc and src/window_set.cc, on
-- the server's clock.
-- Returns now_ms alone (an integer) when every decision of an acquire, check
-- or record was admitted (code 0, no wait: converting a table costs Redis
-- about 6,000 instructions); -4: send the full form; else
-- {code, wait_ms, now_ms, ...}: code 0 ok, 1 limited, -3 too large,
-- -2 limits conflict (4th element: the stored fingerprint); "stats" adds
-- each window's used count, the block's remaining ms, and per unit
-- (r t i o) the cap's remaining (-1: none), ms to its reset, and limit; a
-- merged call adds code and wait_ms per further decision (a conflict, -2,
-- is the answer for all of them).
local t = redis.call('TIME')
-- Milliseconds, with a fraction (the hot path's comparisons with whole
-- numbers are the same as floor(now)'s; the full path floors it, and a
-- number returned to Redis is truncated).
local now = t[1] * 1000 + t[2] / 1000
local key = KEYS[1]
local dg, opc, cin, cout = struct.unpack('<dddd', ARGV[1])
local s = redis.call('HGET', key, 's')
local X = ARGV[2]  -- merged decisions' tokens
local more = X and #X / 16 or 0
if more > 0 then X = {struct.unpack(string.rep('<d', 2 * more), X)} end
-- 2^53: integers are exact in doubles below it; room of a window without a
-- limit is counted from it.
local EXACT = 9007199254740992
-- The hot path: acquires, checks or records (one, or several merged) with
-- our limits, every window in its current bucket (or day), nothing said by
-- the provider in force and, but for records, room in every window for
-- every decision. Decided here exactly as the full path below decides them,
-- in fewer Lua steps (each costs Redis about 90 instructions, a number
-- unpacked or packed about 300); anything else (a bucket or a day turning
-- over, no room: the wait to compute) goes the full path. Every window of a
-- unit books the same, so a unit's least room decides for all of its
-- windows. Merged decisions are taken together: acquires in order all have
-- room exactly when their sum has (costs are whole numbers, exact in
-- doubles below 2^53), checks (which book nothing) when their largest cost
-- of each unit has. An op of 16 or more forces the full path (the tests
-- compare the two).
if s and opc < 3 and #s == 80 then
  local sdg, from, till, rr, rt, ri, ro, ur, ui, uo = struct.unpack('<dddddddddd', s)
  if sdg == dg and from <= now and now < till then
    -- What the decisions take: requests, tokens, input, output.
    local xr, xt, xi, xo = 1, cin + cout, cin, cout
    if opc == 1 then
      for j = 1, 2 * more, 2 do
        local ci, co = X[j], X[j + 1]
        if ci > xi then xi = ci end
        if co > xo then xo = co end
        if ci + co > xt then xt = ci + co end
      end
    elseif more > 0 then
      for j = 1, 2 * more, 2 do xi, xo = xi + X[j], xo + X[j + 1] end
      xr, xt = 1 + more, xi + xo
    end
    -- Below 2^53 what is booked stays exact; past it the full path decides.
    if ui + uo + xt < EXACT and (opc == 2 or (ur + xr <= rr and ui + uo + xt <= rt and
                                              ui + xi <= ri and uo + xo <= ro)) then
      if opc ~= 1 then
        redis.call('HSET', key, 's', struct.pack('<dddddddddd', sdg, from, till, rr, rt, ri, ro,
                                                 ur + xr, ui + xi, uo + xo))
      end
      return now  -- every decision admitted (cheaper for Redis than a table)
    end
  end
end

-- The full path. `raw`: the server's time; `now`, from the stored state on:
-- the key's.
local raw = math.floor(now)
now = raw
local F, head = ARGV[3], ARGV[4]
if opc >= 16 then opc = opc - 16 end
local op = ({'acquire', 'check', 'record', 'settle', 'stats', 'reset', 'block', 'observe'})[opc + 1]
if op == 'reset' then
  redis.call('DEL', key)
  return {0, 0, now}
end
local cp = redis.call('HMGET', key, 'c', 'p', 'k')
local cold, said, kf = cp[1], cp[2], cp[3]
-- The stored state, when whole: H (as "s"), C (as "c"'s numbers), the
-- stored window count sn and the head shead.
local H, C, sn, shead = nil, nil, 0, nil
if s and cold and #s == 80 and #cold >= 16 then
  local _, m = struct.unpack('<dd', cold)
  if m >= 1 and m <= 12 and m % 1 == 0 and #cold >= 16 + 64 * m then
    sn = m
    H = {struct.unpack('<dddddddddd', s)}
    C = {struct.unpack(string.rep('<d', 2 + 8 * sn), cold)}
    shead = string.sub(cold, 17 + 64 * sn)
  end
end
local blob = H ~= nil
if not blob and (s or cold) then
  -- Not a state this script wrote (an earlier layout, or damaged): its
  -- bucket fields would count against a new one, so the key starts afresh.
  redis.call('DEL', key)
  said = false
end
-- The key's time: the server's plus its skew; with the client's estimate
-- (it saw the server's clock step) never more than a second after that;
-- and never before its newest bucket's start. hot_from (H[2], the key's
-- time less the skew) is no earlier than that start: a time at or after
-- it needs no look at the buckets.
local skew = 0
if blob and kf and #kf == 8 then skew = struct.unpack('<d', kf) end
now = raw + skew
if #ARGV[1] >= 40 then
  local _, _, _, _, without = struct.unpack('<ddddd', ARGV[1])
  if now > without + 1000 then now = without + 1000 end
end
if blob and now < H[2] + skew then
  for i = 1, sn do
    local c = 8 * i - 5
    if C[c + 2] == 0 and C[c + 3] * C[c] > now then now = C[c + 3] * C[c] end
  end
end
local nk = now - raw
-- Stored window i as the full path's triple: newest bucket, its count, the
-- counted buckets' sum (sliding); day end, used this day, 0 (calendar). Its
-- numbers in "c" start at C[8i - 5]; what it holds is its base count and
-- what its unit booked since (H[8..10]: requests, input, output).
local function triple(i)
  local c = 8 * i - 5
  local unit = C[c + 6]
  local since = unit == 0 and H[8] or unit == 1 and H[9] + H[10] or unit == 2 and H[9] or H[10]
  local u = C[c + 7] + since
  if C[c + 2] > 0 then return C[c + 3], u, 0 end
  return C[c + 3], u - C[c + 4], u
end
-- L[1..9]: cin, cout, targ, gin, gout, observed remaining and limit, ttl, n;
-- then five per window from L[10]: width, ring, limit, unit, day_end.
local L
local update, ounit = false, 0
if F then
  L = {struct.unpack(string.rep('<d', #F / 8), F)}
  update, ounit = L[1] == 1, L[2]
  L[1], L[2] = cin, cout
else
  -- The short form: the stored state must be for our limits, and no
  -- calendar day may begin.
  if not blob or H[1] ~= dg then return -4 end
  L = {cin, cout, 0, 0, 0, 0, 0, C[1], sn}
  for i = 1, sn do
    local c = 8 * i - 5
    local calendar = C[c + 2] > 0
    if calendar and now >= C[c + 3] then return -4 end
    L[#L + 1] = C[c]
    L[#L + 1] = C[c + 1]
    L[#L + 1] = C[c + 5]
    L[#L + 1] = C[c + 6]
    L[#L + 1] = calendar and C[c + 3] or 0
  end
  head = shead
end
local targ, n = L[3], L[9]
local S = {}
local stored = nil   -- the stored fingerprint, when it differs from ours
local write_head = head
if blob and shead == head and sn == n then
  -- The common case: our limits, our windows.
  for i = 1, n do S[3 * i - 2], S[3 * i - 1], S[3 * i] = triple(i) end
else
  local fp, names = string.match(head, '^(.-)\n(.-)\n$')
  for j = 1, 3 * n do S[j] = false end
  if blob then
    local sfp, snames = string.match(shead, '^(.-)\n(.-)\n$')
    if sfp and sfp ~= '' and sfp ~= fp then
      if (op == 'acquire' or op == 'check') and not update then
        return {-2, 0, raw, sfp}
      end
      if not update then
        stored = sfp
        write_head = sfp .. '\n' .. names .. '\n'
      end
    end
    if snames then
      -- The windows changed (limits=update): keep the ones that stay.
      local old, k = {}, 0
      for name in string.gmatch(snames, '[^,]+') do
        old[name] = k
        k = k + 1
      end
      local i = 0
      for name in string.gmatch(names, '[^,]+') do
        local o = old[name]
        if o and o < sn then
          S[3 * i + 1], S[3 * i + 2], S[3 * i + 3] = triple(o + 1)
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
-- Window i's limit in force (-1: none): the client's, or the provider's
-- limit for its unit when lower, on a per-minute sliding window only (as
-- LimitInForce in src/window_set.h).
local function limit_in_force(i)
  local b = 5 * i + 5
  local lim = L[b + 2]
  if caps and L[b + 4] == 0 then
    local o = caps[L[b + 3]].l
    if o > 0 and (lim < 0 or o < lim) and string.match(window_name(i), '^%a60$') then
      return o
    end
  end
  return lim
end

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
    -- k < h cannot be: the key's time never goes back.
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
    local lim = limit_in_force(i)
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

local result = {0, 0, raw}
local all_ok = false
if op == 'acquire' or op == 'check' or op == 'record' then
  local code, wait = decide(op, cost)
  result[1], result[2] = code, wait
  -- Merged calls: `more` decisions of the same kind (their tokens in X),
  -- decided in order after the first; each adds its code and wait to the
  -- result.
  for j = 1, more do
    local ci, co = X[2 * j - 1], X[2 * j]
    local c2, w2 = decide(op, {1, ci + co, ci, co})
    result[#result + 1] = c2
    result[#result + 1] = w2
    if c2 ~= 0 then code = c2 end
  end
  all_ok = code == 0
elseif op == 'settle' then
  -- The grant's time, the server's then; -1: now (tokens booked to a
  -- request already counted, with nothing granted).
  local at = targ < 0 and now or targ + nk
  local granted = {1, L[4] + L[5], L[4], L[5]}
  -- A top-up is spent now as far as the provider's word goes.
  if caps then
    for u = 1, 3 do
      local d = cost[u + 1] - granted[u + 1]
      if d > 0 and caps[u].t > now then
        caps[u].u = caps[u].u + d
        pv_dirty = true
      end
    end
  end
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
  local p = caps[ounit]
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

-- What the provider said keeps the hot path off until its active_until.
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
-- The digest stored is ours when the head is; else none (whoever's it is
-- takes the full path once and writes its own).
local wdg = write_head == head and dg or 0
if dirty or pv_dirty or nk ~= skew or not blob or H[1] ~= wdg or
    (update and stored == nil and shead ~= head) then
  local from, till = active or 0, math.huge
  -- The base: every window's count now, nothing booked since.
  local room = {EXACT, EXACT, EXACT, EXACT}
  local cs = {L[8], n}
  for i = 1, n do
    local b, j = 5 * i + 5, 3 * i - 2
    local wd, h, lim, unit = L[b], S[j], L[b + 2], L[b + 3]
    local u, o, calendar = S[j + 2], S[j + 2] - S[j + 1], 0
    if L[b + 4] > 0 then
      if h < till then till = h end
      u, o, calendar = S[j + 1], 0, 1
    else
      if (h + 1) * wd < till then till = (h + 1) * wd end
      if h * wd > from then from = h * wd end
    end
    local lf = limit_in_force(i)
    local r = (lf >= 0 and lf or EXACT) - u
    if r < room[unit + 1] then room[unit + 1] = r end
    for _, v in ipairs({wd, L[b + 1], calendar, h, o, lim, unit, u}) do cs[#cs + 1] = v end
  end
  sets[#sets + 1] = 's'
  sets[#sets + 1] = struct.pack('<dddddddddd', wdg, from - nk, till - nk, room[1], room[2],
                                room[3], room[4], 0, 0, 0)
  if nk ~= skew or (kf and not blob) then
    sets[#sets + 1] = 'k'
    sets[#sets + 1] = struct.pack('<d', nk)
  end
  sets[#sets + 1] = 'c'
  sets[#sets + 1] = struct.pack(string.rep('<d', #cs), unpack(cs)) .. write_head
end
if #sets == 2 then
  redis.call('HSET', key, sets[1], sets[2])
elseif #sets > 0 then
  redis.call('HSET', key, unpack(sets))
end
if touched then redis.call('PEXPIRE', key, math.max(L[8], blocked - now + 1000)) end
if all_ok then return raw end
return result
