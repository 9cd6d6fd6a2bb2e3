"""c2c-denoise: neural denoisers for old recordings, trained and evaluated with PyTorch Lightning.

The command lines sit at the top (``python -m lightning_app.<name>``): train, denoise, evaluate, sweep,
submit, bench, corpus, export (``commands`` holds the installed c2c-* entry points); with them ``config``
(defaults <- experiment <- overrides) and ``compat`` (the one place that keeps earlier runs and
checkpoints loading). The libraries are grouped by concern:

    data/        audio I/O, clean sources (procedural speech and music, folders, the real corpus), noise,
                 recording eras and rooms, mixing, the DataModule
    nets/        plain nn.Modules: STFT front end, spectral U-Net, wave U-Net, cross-domain network
    systems/     LightningModules (one base, one thin subclass per variant), losses, checkpoints
    training/    train() (the one place a Trainer is built), callbacks, TensorBoard dashboard, sweeps,
                 Slurm job scripts, run directories
    restoring/   the streaming block engine (numpy) and its two network engines (ONNX Runtime, torch), the
                 ONNX export, the do-no-harm guard, file plans and safe writing, batches, cluster restores
    evaluation/  test sets, scoring, reports and plots, baselines, the listening report, reconstruction
                 chains, speed measurements, notebook helpers
    metrics/     signal measures shared by losses and metrics, torchmetrics metrics, PESQ/STOI/ViSQOL,
                 reference-free figures, DNSMOS

"The research" in comments and docs is the study this suite continues: its three lessons, figures and
settings are in docs/research.md.
"""
