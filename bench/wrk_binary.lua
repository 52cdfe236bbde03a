-- usage: BODY=file.bin HEADER_LENGTH=N wrk -s bench/wrk_binary.lua URL
-- POSTs an Open Inference Protocol request with the binary tensor extension: BODY is the JSON
-- header followed by the raw tensor bytes, HEADER_LENGTH the length of the JSON header
-- (the Inference-Header-Content-Length header). Prints the same RESULT line as the peers'
-- wrk_post.lua.
local f = assert(io.open(os.getenv("BODY"), "rb")); wrk.body = f:read("*a"); f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.headers["Inference-Header-Content-Length"] = assert(os.getenv("HEADER_LENGTH"))
done = function(s, lat, req)
  local e = s.errors
  io.write(string.format('RESULT {"requests":%d,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,"sock_err":%d,"non2xx":%d}\n',
    s.requests, s.requests / (s.duration / 1e6), lat:percentile(50) / 1000, lat:percentile(99) / 1000,
    lat.max / 1000, e.connect + e.read + e.write + e.timeout, e.status))
end
