"""Running a plan forward: ``simulate``, the ``Trace`` it returns, trace files and
plots, parameters per batch member."""
