"""A minimal agent loop. Its keys come from the environment, put there by keyrun:

    keyrun doctor && keyrun -- python agent.py "what is keyrun?"

It never reads a .env file itself and never prints a key.
"""

import os
import sys


def main() -> int:
    question = " ".join(sys.argv[1:]) or "hello"
    try:
        llm_key = os.environ["OPENAI_API_KEY"]
        embed_key = os.environ["VOYAGE_API_KEY"]
    except KeyError as missing:
        print(f"agent: {missing.args[0]} is not set; run me through keyrun", file=sys.stderr)
        return 2
    tools = ["search"] if os.environ.get("TAVILY_API_KEY") else []
    # A real agent would now call its providers with these keys.
    print(f"agent: answering {question!r} with a {len(llm_key)}-character LLM key, "
          f"a {len(embed_key)}-character embedding key and tools {tools}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
