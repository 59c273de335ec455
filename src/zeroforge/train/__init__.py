"""The one training loop (``loop.py``), its optimizers and schedules (``optim.py``) and checkpoints."""
