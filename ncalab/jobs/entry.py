"""The job process's entry point, referred to by name only: the jobs layer starts it (as a
subprocess on this machine, inside each task on a Slurm cluster) but sits below the module
that defines it, so it never imports it statically."""

WORKER_MODULE = "ncalab.cli.job"
