#!/bin/sh
# Check first (doctor names every missing key and how to set it), then run.
set -e
cd "$(dirname "$0")"
keyrun doctor
exec keyrun -- python agent.py "$@"
