"""The seed's worked example, step by step, computed by the library's own attention code.

    tinygpt-walkthrough
"""

from tinygpt.lab.demos.walkthrough import walkthrough as main

if __name__ == "__main__":
    main()
