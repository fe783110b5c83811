"""The data: where text comes from (`corpus`), how it is prepared in bounded memory (`prepare`,
`encoding`, `shards`), the tokenizers (`tokenizer`), the windows a run trains on (`windows`),
and their settings (`config`). Plain PyTorch and NumPy."""
