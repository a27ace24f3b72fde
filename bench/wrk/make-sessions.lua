-- Creates sessions through the module, one connection per thread: asks a
-- gated page, which starts a login and answers with its state, then calls
-- the callback with that state and any code.  The bench token endpoint
-- accepts every code, so the authorize step at Kanka is left out; the
-- state, the code exchange and the session are the module's own.
-- Arguments: output file prefix, sessions per thread, gated path.
-- Each thread writes "kanka_session=..." lines to <prefix>.<thread>.

local threads = {}

function setup(thread)
   threads[#threads + 1] = thread
   thread:set("id", #threads)
end

function init(args)
   prefix = args[1]
   out = assert(io.open(prefix .. "." .. id, "w"))
   want = tonumber(args[2])
   gated = args[3]
   made = 0
   failed = 0
   step = 1

   if want <= 0 then
      finish()
   end
end

-- the file closed, a marker tells the driver that this thread is done
function finish()
   if out then
      out:close()
      out = nil
      assert(io.open(prefix .. "." .. id .. ".done", "w")):close()
   end

   wrk.thread:stop()
end

function request()
   if step == 1 then
      return wrk.format("GET", gated, {
         ["Accept"] = "text/html",
         ["Sec-Fetch-Mode"] = "navigate",
      })
   end

   return wrk.format("GET", "/kanka/callback?code=bench&state=" .. state, {
      ["Accept"] = "text/html",
      ["Cookie"] = login,
   })
end

function response(status, headers, body)
   local cookie = headers["Set-Cookie"] or ""

   if step == 1 then
      state = (headers["Location"] or ""):match("[?&]state=([%w_-]+)")
      login = cookie:match("^([^;]+)")

      if status == 302 and state and login then
         step = 2
      else
         failed = failed + 1
      end

   else
      local session = cookie:match("^(kanka_session=[^;]+)")

      step = 1

      if status == 302 and session then
         out:write(session, "\n")
         made = made + 1

         if made >= want then
            finish()
         end

      else
         failed = failed + 1
      end
   end

   -- a broken setup must not spin until the run's end
   if failed >= 100 then
      finish()
   end
end

function done(summary, latency, requests)
   local made, failed = 0, 0

   for _, t in ipairs(threads) do
      made = made + t:get("made")
      failed = failed + t:get("failed")
   end

   io.write(string.format("sessions made %d failed %d\n", made, failed))
end
