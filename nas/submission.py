"""Submitting a search: everything that can be checked before a worker spends a second on it."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from latency_lut.predictor import MissingKeysError
from nas.datasets import check_splittable, load_dataset
from nas.latency import get_device, is_this_machine, load_predictor
from nas.search.request import SearchRequest
from nas.search.runner import BudgetUnreachableError, search_space_for
from nas.store import DeviceRepository, SearchRepository, session_scope


def submit_search(
    sessions: sessionmaker[Session],
    request: SearchRequest,
    owner: str | None = None,
    dataset_label: str | None = None,
) -> str:
    """Validate a request and queue it; returns the search's public id.

    `dataset_label` is what the search shows as its dataset when `request.dataset` is a server-side
    path (an uploaded dataset: the API passes its id), so listings never expose paths.

    Refused (nothing stored) when the device is unknown, the dataset unreadable, the device's table
    lacks keys of the space and the device is not this machine (it cannot be profiled on demand), or
    the budget is below the fastest network the space can reach on that device.
    """
    device = get_device(sessions, request.device)
    dataset = load_dataset(request.dataset)
    check_splittable(dataset, with_test=True)
    space = search_space_for(request, dataset.num_classes)
    predictor = load_predictor(sessions, request.device, space)
    missing = predictor.table.missing_keys(space.block_keys())
    if missing and not is_this_machine(device):
        raise MissingKeysError(request.device, missing, space=request.space, resolution=request.resolution)
    if not missing:
        fastest_ms, _ = predictor.pricer(space).fastest()
        if request.budget_ms < fastest_ms:
            raise BudgetUnreachableError(request.budget_ms, fastest_ms, request.device)
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
            trials_total=request.preset.trials,
        )
        return search.public_id
