"""Request numbers stay unique when many writers open requests at once."""

import multiprocessing
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from hotline import registry
from hotline.db import Database
from hotline.models import Request
from hotline.numbers import is_valid

WORKERS = 16
PER_WORKER = 13  # 208 requests in all


def _open_many(db: Database, worker: int) -> list[str]:
    numbers = []
    for i in range(PER_WORKER):
        with db.session() as s:
            req = registry.open_request(
                s, kind="incident", channel="web", actor=f"worker:{worker}", subject=f"{worker}/{i}"
            )
            numbers.append(req.number)
    return numbers


def _check(db: Database, numbers: list[str]) -> None:
    total = WORKERS * PER_WORKER
    assert len(numbers) == total
    assert len(set(numbers)) == total
    assert all(is_valid(n) for n in numbers)
    # Allocated in increasing order without gaps: exactly the first `total` sequence values.
    assert sorted(int(n[:-1]) for n in numbers) == list(range(1000, 1000 + total))
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Request)) == total


def test_concurrent_threads_get_unique_numbers(any_db):
    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(lambda w: _open_many(any_db, w), range(WORKERS)))
    _check(any_db, [n for chunk in results for n in chunk])


def _process_worker(args: tuple[str, int]) -> list[str]:
    url, worker = args
    db = Database(url)
    try:
        return _open_many(db, worker)
    finally:
        db.dispose()


def test_concurrent_processes_get_unique_numbers(any_db):
    # Separate processes, as `hotline serve`, `hotline worker` and `hotline mail` are.
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(WORKERS) as pool:
        results = pool.map(_process_worker, [(any_db.url, w) for w in range(WORKERS)])
    _check(any_db, [n for chunk in results for n in chunk])
