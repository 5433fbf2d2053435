"""The 30-minute translator: the base recipe (d_model 256, 3 + 3 pre-LN layers, 4 heads, d_ff 512,
dropout 0.1, joint BPE of 8,000, batches of about 4,000 tokens, the paper's warm-up schedule), 30 minutes
of training, translated with the mean of the last 5 snapshots (100 steps apart), greedy and beam 4."""
script = "train_translator"
minutes = 30
average = 5
beam = 4
