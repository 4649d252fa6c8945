"""MCP servers without keys in their clients' configuration files (SPEC §3).

Every MCP client (Claude Desktop, Claude Code, Cursor, VS Code, Windsurf) starts its local
servers from a JSON file whose ``env`` block usually holds API keys in plain text: files that
are synced, committed and pasted into issues. ``keyrun mcp scan`` finds them;
``keyrun mcp protect`` moves each value to a store, writes a keyrun profile with one
environment per server, and rewrites the entry to start the server through keyrun:

    result = scan_configs()                       # clients.py says where it looks
    store = choose_store("keychain", config=None, project=None, environ=os.environ, cwd=cwd)
    protection = plan(result, store, launcher=keyrun_command(), environ=os.environ, home=home)
    for file_plan in protection.plans:
        carry_out(file_plan, store, os.environ, protection)
"""

from __future__ import annotations

from keyrun.mcp.protect import Left, Protection, carry_out, plan
from keyrun.mcp.rewrite import keyrun_command
from keyrun.mcp.scan import Finding, ScanResult, scan_configs
from keyrun.mcp.store import Store, choose_store

__all__ = ["Finding", "Left", "Protection", "ScanResult", "Store", "carry_out", "choose_store",
           "keyrun_command", "plan", "scan_configs"]
