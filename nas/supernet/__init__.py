"""Weight sharing: one supernet trained once, every member of a search space scored with its weights."""
