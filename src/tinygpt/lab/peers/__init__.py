"""Other projects' training loops side by side with ours, on the same hardware: the "from
scratch" book's (`book`) and nanoGPT's CPU recipe (`nanogpt`), each run as a separate program."""
