"""Training: train() (the one place a Trainer is built), callbacks, dashboard, sweeps, Slurm."""
