"""The cool-down recipe's 3,100 steps at twice the paper's learning rate, dropout 0.2, on one GPU;
then the choices on validation (8 CPU threads)."""
script = "train_translator"
device = "cuda"
threads = 8
steps = 3100
cooldown = 620
minutes = 3.6
average = 10
average_every = 150
lr_scale = 2
dropout = 0.2
