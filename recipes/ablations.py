"""What each ingredient of the recipe is worth: notebook 05's short run (joint BPE of 2,000, d_model 128,
2 + 2 layers) trained 1,200 steps per variant (no warm-up, post-LN, no label smoothing, another seed),
plus the overfit-one-batch check; one CPU thread, so the figures repeat to the bit."""
script = "ablations"
steps = 1200
eval_every = 100
overfit_steps = 200
threads = 1
