"""The service floor: one module per journey, owning sessions and speaking in typed records."""
