"""The lab wing, by kind: benchmarks (`bench`), sweep reports and their statistics (`report`),
other projects side by side (`peers`), the teaching demos (`demos`), and the CPU speedrun
(`speedrun`), on top of training and the core."""
