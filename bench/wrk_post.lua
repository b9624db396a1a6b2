-- wrk script: POST a small non-streaming completion (the body can be overridden with WRK_BODY).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("WRK_BODY") or
  '{"model":"sparkbench-mock","prompt":"storage shapes latency","max_tokens":16}'
