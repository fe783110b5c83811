"""The benchmarks (`tinygpt-bench`): each measurement (`measure`), the whole run of them (`run`),
docs/results/benchmarks.md (`render`), the GPU section, memory, preparing a large corpus, start-up,
runs sharing the CPU, and the timing they share."""
