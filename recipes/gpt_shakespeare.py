"""The character-level GPT on tiny Shakespeare: d_model 128, 4 pre-LN blocks of 4 heads, context 128,
batches of 16, AdamW at 3e-3 with a cosine to 3e-4 over a 5-minute budget."""
script = "train_gpt"
minutes = 5
