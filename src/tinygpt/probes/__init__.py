"""What the lab measures inside a model, in plain PyTorch: attention statistics and the hook
points' patterns (`attention`), induction and copying (`induction`, `circuit`), sinks and
outliers (`sinks`), the int8 cost (`quantize`), and scoring any text (`evaluate`)."""
