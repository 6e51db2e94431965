from jobtrail import Status, Tracker


def test_track_records_a_succeeded_job(tracker: Tracker) -> None:
    with tracker.track("import", owner="u1", total=2) as ctx:
        for row in ("a", "b"):
            with ctx.item(row):
                pass
    job = tracker.get(ctx.job_id)
    assert job.status is Status.SUCCEEDED
    assert job.items_done == 2
