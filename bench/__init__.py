"""EventFlow's benchmark (``make bench``): throwaway deployments driven by wrk."""
