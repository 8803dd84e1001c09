"""The benchmark behind ``eventflow bench``: throwaway deployments driven by wrk."""
