"""Running fits: the LightningCLI (AudioCLI), checkpoints (the only reader of .ckpt files), checks before the first
step, the run record, tracking. Imports models, data and audio; never commands.
"""
