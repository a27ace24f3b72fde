-- Sends every request with a session cookie picked at random from a file
-- of "name=value" lines.  Arguments: the file, the path to ask for, and
-- how many different requests to build (the spread).
--
-- init() builds the spread of whole requests in advance, each for
-- path?n=<number> with the cookies of the file taken in turn, and keeps
-- them as one string of fixed-width records: a table of 100,000 strings
-- would have the garbage collector walk it again and again.  request()
-- only cuts a random record out of that string.
--
-- With the same spread, a file of 10 cookies and a file of 100,000 cost
-- wrk the same: the same number of records, the same string, the same
-- cut per request.  Only the number of sessions the server looks up
-- differs, and that is what case 3 measures.

local requests
local width
local count

function init(args)
   local lines = {}

   for line in io.lines(args[1]) do
      lines[#lines + 1] = line
   end

   assert(#lines > 0, "no cookies in " .. args[1])

   local path = args[2] or "/"
   local spread = tonumber(args[3] or #lines)

   assert(spread >= #lines, "a spread smaller than the cookies in "
                            .. args[1])

   local records = {}

   for i = 1, spread do
      records[i] = wrk.format("GET", path .. string.format("?n=%07d", i), {
         ["Accept"] = "application/json",
         ["Cookie"] = lines[(i - 1) % #lines + 1],
      })
   end

   width = #records[1]

   for _, record in ipairs(records) do
      assert(#record == width, "requests of different lengths: cookies"
                               .. " of different lengths in " .. args[1]
                               .. ", or a spread over 9,999,999")
   end

   requests = table.concat(records)
   count = spread
   lines = nil
   records = nil
   collectgarbage()

   -- threads of one run must not pick the same sequence
   math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)"), 16)
                                or 0))
end

function request()
   local at = math.random(count) * width

   return requests:sub(at - width + 1, at)
end
