"""A long-running service that shuts down cleanly on `docker stop`.

As PID 1 in a container, a process gets no default action for SIGTERM: it must handle it,
which is what this does. keyrun has exec'd into this process, so the signal arrives here.
"""

import os
import signal
import sys
import time


def stop(signum: int, frame: object) -> None:
    print("app: got SIGTERM, shutting down", flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
print(f"app: started with {os.environ.get('KEYRUN_PROFILE')}; OPENAI_API_KEY is "
      f"{'set' if os.environ.get('OPENAI_API_KEY') else 'missing'}", flush=True)
while True:
    time.sleep(1)
