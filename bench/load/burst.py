"""bench/load/burst.py: N concurrent POSTs of one JSON body, released together.

usage: python3 burst.py HOST PORT PATH BODY_FILE N
Opens N connections first (N threads), then releases every request at once with a barrier,
and prints one JSON line: {"status": {"202": …, "429": …}, "errors": …, "no_retry_after": …,
"seconds": …}. Standard library only.
"""

import http.client
import json
import sys
import threading
import time
from collections import Counter

host, port, path, body_file, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
body = open(body_file, "rb").read()
barrier = threading.Barrier(n + 1)
lock = threading.Lock()
statuses = Counter()
errors = Counter()
no_retry_after = 0


def one():
    global no_retry_after
    try:
        conn = http.client.HTTPConnection(host, port, timeout=60)
        conn.connect()
    except OSError as e:
        with lock:
            errors[type(e).__name__] += 1
        barrier.wait()
        return
    barrier.wait()
    try:
        conn.request("POST", path, body, {"content-type": "application/json"})
        response = conn.getresponse()
        response.read()
        with lock:
            statuses[str(response.status)] += 1
            if response.status == 429 and response.getheader("retry-after") is None:
                no_retry_after += 1
    except OSError as e:
        with lock:
            errors[type(e).__name__] += 1
    finally:
        conn.close()


threads = [threading.Thread(target=one) for _ in range(n)]
for t in threads:
    t.start()
barrier.wait()
started = time.monotonic()
for t in threads:
    t.join()
print(json.dumps({"status": dict(statuses), "errors": dict(errors),
                  "no_retry_after": no_retry_after, "seconds": round(time.monotonic() - started, 3)}))
