"""Processing: the claim loop, handlers, retry policy and the dispatcher."""
