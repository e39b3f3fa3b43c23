"""Training and data-making (not installed): the procedural dogs, the generator and encoder training, and the
encoder release script. Run from a checkout: `python -m training.train_generator`."""
