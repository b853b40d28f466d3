"""Running fits: the LightningCLI (AudioCLI), checkpoints (reading, checking and resolving
Lightning .ckpt files; models/weights.py reads one as a weights file), checks before the first
step, the run record, tracking. Imports models, data and audio; never commands.
"""
