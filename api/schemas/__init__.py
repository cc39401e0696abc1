"""Response models and response documentation that are purely HTTP-shaped (domain records live beside
their services in `nas.services`)."""
