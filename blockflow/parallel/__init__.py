"""Many runs at once: parameter sweeps and many trainings on local processes or Dask."""
