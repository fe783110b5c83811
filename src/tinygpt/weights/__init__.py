"""A model's weights in and out: training checkpoints read without running code (`checkpoint`),
Hugging Face GPT-2 folders (`hf`), a prompt continued by a saved model (`complete`), and the
commands' settings (`config`)."""
