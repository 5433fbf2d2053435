"""Is a cool-down worth it? The 2-hour recipe at dropout 0.3 cut to 1,950 steps, the learning rate taken
linearly to 0 over the last 390; ``scripts/compare_runs.py`` measures it on validation against the
snapshot of ``multi30k_2h_paper_schedule`` at the same step."""
script = "train_translator"
steps = 1950
cooldown = 390
minutes = 100
dropout = 0.3
average = 10
average_every = 150
compare_with = ["multi30k_2h_paper_schedule"]
compare_step = 1950
