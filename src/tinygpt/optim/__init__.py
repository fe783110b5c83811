"""The optimizer, in plain PyTorch: AdamW, or Muon for the blocks' matrices (`muon`), over
parameter groups with a learning-rate schedule (`optimizer`), and their settings (`config`)."""
