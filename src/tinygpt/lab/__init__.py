"""The lab wing: what the lab measures and writes up, on top of training and the core:
benchmarks, a peer side by side, sweep reports and their statistics, reading a run's events back,
and the teaching demos."""
