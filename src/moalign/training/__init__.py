"""Training plumbing shared by the stages: TRL/transformers arguments, callbacks, checkpoints."""
