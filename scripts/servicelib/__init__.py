"""Start, stop and check the project's local Slurm (fake GPUs), munge and Redis on loopback."""
