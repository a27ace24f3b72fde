-- Sends every request with a session cookie picked at random from a file
-- of "name=value" lines.  Arguments: the file, the path to ask for.
--
-- The cookies are kept as one string of fixed-width records: a table of
-- 100,000 strings would have the garbage collector walk it again and
-- again, and wrk would slow down with the number of cookies alone.

local cookies
local width
local count
local path

function init(args)
   local lines = {}

   for line in io.lines(args[1]) do
      lines[#lines + 1] = line
   end

   assert(#lines > 0, "no cookies in " .. args[1])

   width = #lines[1]

   for _, line in ipairs(lines) do
      assert(#line == width, "cookies of different lengths in " .. args[1])
   end

   cookies = table.concat(lines)
   count = #lines
   lines = nil
   collectgarbage()

   path = args[2] or "/"

   -- threads of one run must not pick the same sequence
   math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)"), 16)
                                or 0))
end

function request()
   local at = math.random(count) * width

   return wrk.format("GET", path, {
      ["Accept"] = "application/json",
      ["Cookie"] = cookies:sub(at - width + 1, at),
   })
end
