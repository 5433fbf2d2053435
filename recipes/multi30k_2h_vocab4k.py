"""The cool-down recipe with a joint BPE of 4,000 tokens instead of 8,000 (5.0M parameters; as many
steps as fit in 2 hours), chosen on validation against ``multi30k_2h_dropout03``, with α up to 3.5."""
script = "train_translator"
vocab = 4000
steps = 3650
cooldown = 730
minutes = 118
dropout = 0.3
average = 10
average_every = 150
choose_among = ["multi30k_2h_dropout03", "multi30k_2h_vocab4k"]
alphas = [0.6, 0.8, 1.0, 1.2, 1.5, 1.8, 2.1, 2.5, 3.0, 3.5]
