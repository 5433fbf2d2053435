"""Two hours with a cool-down at dropout 0.3: 3,100 steps, the learning rate taken linearly to 0 over
the last 620; the last 10 snapshots kept 150 steps apart; then the same choices on validation."""
script = "train_translator"
steps = 3100
cooldown = 620
minutes = 118
dropout = 0.3
average = 10
average_every = 150
