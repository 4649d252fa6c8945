"""A stand-in for an AI agent: it reads its keys from the environment, as real ones do.

Run it through keyrun:  keyrun -- python agent.py
"""

import os
import sys

NEEDED = ("OPENAI_API_KEY", "PINECONE_API_KEY")
OPTIONAL = ("SERPAPI_API_KEY",)

missing = [name for name in NEEDED if not os.environ.get(name)]
if missing:
    sys.exit(f"agent: missing {', '.join(missing)} (run me as: keyrun -- python agent.py)")

print(f"agent: running as {os.environ.get('KEYRUN_PROFILE', 'no keyrun profile')}")
for name in NEEDED + OPTIONAL:
    value = os.environ.get(name)
    state = f"set ({len(value)} characters)" if value else "not set"
    print(f"agent: {name} {state}")
