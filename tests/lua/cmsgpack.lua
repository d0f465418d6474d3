-- cmsgpack.lua: the msgpack codec that Redis builds into its Lua (lua_cmsgpack.c), written in
-- plain Lua for fakeredis, whose Lua has none. Test side only: tests/test_redis_support.py
-- loads it into fakeredis (lua_modules={'cmsgpack'}, found through LUA_PATH), so that the
-- store's scripts run unchanged there.
--
-- It follows lua_cmsgpack where the scripts depend on it: cmsgpack.pack(...) packs each
-- argument and joins them; a table packs as an array when its keys are exactly 1..n, else
-- as a map; integral numbers pack as the smallest integer encoding, other numbers as a
-- float 64; strings as str. cmsgpack.unpack(s) returns every value in s: nil for nil,
-- strings for str, tables for arrays and maps; it raises on bytes that are not msgpack, end
-- too soon, or are types Redis's version does not read (bin, ext).

local M = {}
local tunpack = table.unpack or unpack

local function bytes(v, n) -- n big-endian bytes of an integer 0 <= v < 2^53
  local out = {}
  for i = n, 1, -1 do
    out[i] = string.char(v % 256)
    v = math.floor(v / 256)
  end
  return table.concat(out)
end

local function pack_double(v)
  local sign = 0
  if v < 0 or (v == 0 and 1 / v < 0) then sign, v = 1, -v end
  local exponent, mantissa
  if v ~= v then
    exponent, mantissa = 2047, 2 ^ 51
  elseif v == math.huge then
    exponent, mantissa = 2047, 0
  elseif v == 0 then
    exponent, mantissa = 0, 0
  else
    local m, e = math.frexp(v) -- v = m * 2^e, 0.5 <= m < 1
    if e < -1021 then -- subnormal
      exponent, mantissa = 0, v * 2 ^ 1074
    else
      exponent, mantissa = e + 1022, (m * 2 - 1) * 2 ^ 52
    end
  end
  local high = sign * 2 ^ 31 + exponent * 2 ^ 20 + math.floor(mantissa / 2 ^ 32)
  return '\203' .. bytes(high, 4) .. bytes(mantissa % 2 ^ 32, 4)
end

local function pack_number(v)
  if v ~= v or math.floor(v) ~= v or v >= 2 ^ 63 or v < -2 ^ 63 then return pack_double(v) end
  if v >= 0 then
    if v < 128 then return string.char(v) end
    if v < 256 then return '\204' .. string.char(v) end
    if v < 65536 then return '\205' .. bytes(v, 2) end
    if v < 4294967296 then return '\206' .. bytes(v, 4) end
    return '\207' .. bytes(v, 8)
  end
  if v >= -32 then return string.char(256 + v) end
  if v >= -128 then return '\208' .. string.char(256 + v) end
  if v >= -32768 then return '\209' .. bytes(65536 + v, 2) end
  if v >= -2147483648 then return '\210' .. bytes(4294967296 + v, 4) end
  local high = math.floor(v / 4294967296)
  return '\211' .. bytes(high + 4294967296, 4) .. bytes(v - high * 4294967296, 4)
end

local function header(n, small, small_max, codes)
  if n <= small_max then return string.char(small + n) end
  if codes[1] and n < 256 then return string.char(codes[1]) .. string.char(n) end
  if n < 65536 then return string.char(codes[2]) .. bytes(n, 2) end
  return string.char(codes[3]) .. bytes(n, 4)
end

local function is_array(t)
  local count, max = 0, 0
  for key in pairs(t) do
    if type(key) ~= 'number' or key < 1 or math.floor(key) ~= key then return false end
    count = count + 1
    if key > max then max = key end
  end
  return count == max
end

local encode
encode = function(v)
  local kind = type(v)
  if kind == 'number' then return pack_number(v) end
  if kind == 'string' then return header(#v, 160, 31, {217, 218, 219}) .. v end
  if kind == 'boolean' then return v and '\195' or '\194' end
  if kind == 'table' then
    local out = {}
    if is_array(v) then
      for i = 1, #v do out[i] = encode(v[i]) end
      return header(#v, 144, 15, {false, 220, 221}) .. table.concat(out)
    end
    local n = 0
    for key, value in pairs(v) do
      out[#out + 1] = encode(key) .. encode(value)
      n = n + 1
    end
    return header(n, 128, 15, {false, 222, 223}) .. table.concat(out)
  end
  return '\192' -- nil, and what msgpack cannot hold (functions...), as lua_cmsgpack does
end

function M.pack(...)
  local out = {}
  for i = 1, select('#', ...) do out[i] = encode((select(i, ...))) end
  return table.concat(out)
end

local function read(s, pos, n) -- an unsigned big-endian integer of n bytes at pos
  if pos + n - 1 > #s then error('Missing bytes in input.') end
  local v = 0
  for i = pos, pos + n - 1 do v = v * 256 + string.byte(s, i) end
  return v
end

local function signed(v, n)
  if v >= 2 ^ (8 * n - 1) then return v - 2 ^ (8 * n) end
  return v
end

local function unpack_float(s, pos, n)
  local high = read(s, pos, 4)
  local sign = high >= 2 ^ 31 and -1 or 1
  local exponent_bits, fraction_bits, bias = 11, 52, 1023
  local fraction
  if n == 4 then
    exponent_bits, fraction_bits, bias = 8, 23, 127
    fraction = high % 2 ^ 23
  else
    fraction = (high % 2 ^ 20) * 2 ^ 32 + read(s, pos + 4, 4)
  end
  local exponent = math.floor(high / 2 ^ (32 - 1 - exponent_bits)) % 2 ^ exponent_bits
  if exponent == 2 ^ exponent_bits - 1 then
    return fraction == 0 and sign * math.huge or 0 / 0
  end
  if exponent == 0 then return sign * fraction * 2 ^ (1 - bias - fraction_bits) end
  return sign * (1 + fraction / 2 ^ fraction_bits) * 2 ^ (exponent - bias)
end

local decode

local function text(s, pos, n)
  if pos + n - 1 > #s then error('Missing bytes in input.') end
  return string.sub(s, pos, pos + n - 1), pos + n
end

local function items(s, pos, n, map)
  local t = {}
  for i = 1, n do
    if map then
      local key, value
      key, pos = decode(s, pos)
      value, pos = decode(s, pos)
      if key ~= nil then t[key] = value end
    else
      t[i], pos = decode(s, pos)
    end
  end
  return t, pos
end

local WIDTH = {[217] = 1, [218] = 2, [219] = 4} -- str 8, 16, 32
local UINT = {[204] = 1, [205] = 2, [206] = 4, [207] = 8}
local INT = {[208] = 1, [209] = 2, [210] = 4}

decode = function(s, pos) -- the value at pos, and the position after it
  local c = string.byte(s, pos)
  if c == nil then error('Missing bytes in input.') end
  if c < 128 then return c, pos + 1 end
  if c >= 224 then return c - 256, pos + 1 end
  if c < 144 then return items(s, pos + 1, c - 128, true) end
  if c < 160 then return items(s, pos + 1, c - 144, false) end
  if c < 192 then return text(s, pos + 1, c - 160) end
  if c == 192 then return nil, pos + 1 end
  if c == 194 then return false, pos + 1 end
  if c == 195 then return true, pos + 1 end
  if WIDTH[c] then return text(s, pos + 1 + WIDTH[c], read(s, pos + 1, WIDTH[c])) end
  if UINT[c] then return read(s, pos + 1, UINT[c]), pos + 1 + UINT[c] end
  if INT[c] then return signed(read(s, pos + 1, INT[c]), INT[c]), pos + 1 + INT[c] end
  if c == 211 then
    return signed(read(s, pos + 1, 4), 4) * 4294967296 + read(s, pos + 5, 4), pos + 9
  end
  if c == 202 then return unpack_float(s, pos + 1, 4), pos + 5 end
  if c == 203 then return unpack_float(s, pos + 1, 8), pos + 9 end
  if c == 220 or c == 222 then return items(s, pos + 3, read(s, pos + 1, 2), c == 222) end
  if c == 221 or c == 223 then return items(s, pos + 5, read(s, pos + 1, 4), c == 223) end
  error('Bad data format in input.')
end

function M.unpack(s)
  local out, pos, n = {}, 1, 0
  while pos <= #s do
    n = n + 1
    out[n], pos = decode(s, pos)
  end
  return tunpack(out, 1, n)
end

return M
