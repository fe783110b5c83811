"""The seed's worked example, step by step, computed by the library's own attention code.

    python scripts/attention_walkthrough.py
"""

from tinygpt.walkthrough import walkthrough

if __name__ == "__main__":
    walkthrough()
