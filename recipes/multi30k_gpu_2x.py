"""The cool-down recipe at dropout 0.3 for twice the steps (6,200) on one GPU (bf16 autocast), to
measure what the recipe needs rather than to meet the 2-CPU-hour budget; then the choices on validation."""
script = "train_translator"
device = "cuda"
steps = 6200
cooldown = 1240
minutes = 5.5
dropout = 0.3
average = 10
average_every = 300
