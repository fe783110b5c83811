"""The entry points, one module each, behind the console scripts (`tinygpt-train`, ...) and the
thin `scripts/*.py`. They parse their arguments and call one library function; a UsageError
becomes one `error:` line and exit 2 (`tinygpt.errors`)."""
