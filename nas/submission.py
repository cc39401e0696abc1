"""Submitting a search: everything that can be checked before a worker spends a second on it."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from nas.datasets import DEFAULT_MAX_BYTES, check_splittable, load_dataset
from nas.latency import get_device, load_predictor, machine_of
from nas.search.request import SearchRequest
from nas.search.runner import check_budget, search_space_for
from nas.store import DeviceRepository, SearchRepository, session_scope


def submit_search(
    sessions: sessionmaker[Session],
    request: SearchRequest,
    owner: str | None = None,
    dataset_label: str | None = None,
    max_dataset_bytes: int = DEFAULT_MAX_BYTES,
) -> str:
    """Validate a request and queue it; returns the search's public id.

    `dataset_label` is what the search shows as its dataset when `request.dataset` is a server-side
    path (an uploaded dataset: the API passes its id), so listings never expose paths.
    `max_dataset_bytes` bounds the dataset's decoded pixels (the API passes HWNAS_MAX_UPLOAD_MB): a
    built-in dataset whose options ask for more is refused before it is generated.

    Refused (nothing stored) when the device is unknown, the dataset unreadable, the device's table
    lacks keys of the space and no machine measures the device (a phone: it cannot be profiled on demand), or
    the budget is below the fastest network the space can reach on that device.
    """
    device = get_device(sessions, request.device)
    dataset = load_dataset(request.dataset, max_bytes=max_dataset_bytes)
    check_splittable(dataset, with_test=True)
    space = search_space_for(request, dataset.num_classes)
    predictor = load_predictor(sessions, request.device, space)
    # The runner's own check. A device some machine measures may lack keys (a worker there profiles them
    # first, and checks the budget again when it starts); a phone may not.
    check_budget(request, predictor, space, missing_ok=machine_of(device) is not None)
    with session_scope(sessions) as session:
        device_row = DeviceRepository(session).require(request.device)
        search = SearchRepository(session).create(
            device_id=device_row.id,
            space=request.space,
            dataset=dataset_label or request.dataset,
            budget_ms=request.budget_ms,
            strategy=request.strategy,
            request=request.model_dump(mode="json"),
            owner=owner,
            trials_total=request.trials_total,
        )
        return search.public_id
