"""The 2-hour translator (the headline model): the cool-down recipe at dropout 0.2, 3,100 steps on
2 CPU cores; then ``scripts/choose.py`` chooses the run (against ``multi30k_2h_dropout03``), the
averaging, the beam size and the length penalty on validation, and decodes the test set once."""
script = "train_translator"
steps = 3100
cooldown = 620
minutes = 118
dropout = 0.2
average = 10
average_every = 150
choose_among = ["multi30k_2h_dropout03", "multi30k_2h"]
