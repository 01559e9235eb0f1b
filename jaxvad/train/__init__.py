"""Training: state, data-parallel mesh, the jitted step, checkpoints and the loop."""
