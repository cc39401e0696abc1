"""The service's routers, in the order they are mounted."""

from api.routes import architectures, dashboard, datasets, devices, health, jobs, metrics, networks, searches, spaces

ROUTERS = [
    health.router,
    metrics.router,
    spaces.router,
    devices.router,
    networks.router,
    jobs.router,
    datasets.router,
    searches.router,
    architectures.router,
    dashboard.router,
]
