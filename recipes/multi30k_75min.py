"""The 30-minute translator trained 45 minutes more (75 in all): starts from the checkpoint
``multi30k_30min`` left, translated as that recipe does."""
script = "train_translator"
start_from = "multi30k_30min"
minutes = 45
average = 5
beam = 4
