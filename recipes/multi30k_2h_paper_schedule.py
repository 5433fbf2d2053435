"""Two hours on 2 CPU cores with the paper's schedule (no cool-down): dropout 0.3, the last 10 weight
snapshots kept 150 steps apart; then ``scripts/choose.py`` chooses the averaging, beam size and
length penalty on validation and decodes the test set once."""
script = "train_translator"
minutes = 112
dropout = 0.3
average = 10
average_every = 150
