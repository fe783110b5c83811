"""A model's weights in and out: training checkpoints read without running code (`checkpoint`),
Hugging Face GPT-2 folders and their tokenizers (`hf`, `hf_tokenizer`), a prompt continued by a
saved model (`complete`), and the commands' settings (`config`)."""
