-- wrk script for bench/run.sh: POST the JSON body in the file named by $BENCH_BODY_FILE,
-- with `Authorization: $BENCH_AUTH` when that is set (LiteLLM wants its master key).
local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "r"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("BENCH_AUTH")
if auth ~= nil and auth ~= "" then
  wrk.headers["Authorization"] = auth
end
