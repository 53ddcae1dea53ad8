from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rollback.runtime.capture import (
    capture_line,
    hour_prefixes,
    parse_capture_line,
    parse_s3_uri,
    read_captures,
    write_capture_file,
)
from rollback.runtime.errors import DataError
from tests.verdicts.conftest import BUCKET, CAPTURE_URI

# A record exactly as SageMaker documents it (CSV in, CSV out, no inferenceId).
AWS_SAMPLE = (
    '{"captureData":{"endpointInput":{"observedContentType":"text/csv","mode":"INPUT",'
    '"data":"0.00632,18.00,2.310,0","encoding":"CSV"},"endpointOutput":{"observedContentType":'
    '"text/csv; charset=utf-8","mode":"OUTPUT","data":"30.4133586884","encoding":"CSV"}},'
    '"eventMetadata":{"eventId":"8f45e35c-fa44-40d2-8ed3-1bcab3a596f3","inferenceTime":'
    '"2020-07-30T13:36:30Z"},"eventVersion":"0"}'
)


def test_documented_aws_record_parses_with_csv_values() -> None:
    record = parse_capture_line(AWS_SAMPLE, variant="AllTraffic")
    assert record.pair_key == "8f45e35c-fa44-40d2-8ed3-1bcab3a596f3"
    assert record.inference_time == datetime(2020, 7, 30, 13, 36, 30, tzinfo=UTC)
    assert record.input is not None and record.input.value() == [0.00632, 18.0, 2.31, 0.0]
    assert record.output is not None and record.output.value() == [30.4133586884]


def test_base64_payloads_and_inference_id_round_trip() -> None:
    at = datetime(2026, 3, 1, 10, 15, 2, 345000, tzinfo=UTC)
    line = capture_line(
        event_id="e1",
        inference_id="req-1",
        inference_time=at,
        input_data=b"\x00\x01binary",
        input_content_type="application/x-npy",
        output_data={"score": 0.25},
    )
    record = parse_capture_line(line, variant="candidate")
    assert record.pair_key == "req-1" and record.inference_time == at
    assert record.input is not None and record.input.encoding == "BASE64"
    assert record.input.value() == b"\x00\x01binary"
    assert record.output is not None and record.output.value() == {"score": 0.25}


def test_malformed_line_names_its_source() -> None:
    with pytest.raises(DataError, match=r"s3://b/k.jsonl:7: not a SageMaker data-capture record"):
        parse_capture_line('{"captureData": {}}', variant="stable", source="s3://b/k.jsonl:7")


def test_hour_prefixes_follow_the_sagemaker_layout() -> None:
    since = datetime(2026, 3, 1, 22, 30, tzinfo=UTC)
    prefixes = hour_prefixes("data-capture", "ep-dev", "shadow", since, since + timedelta(hours=2))
    assert prefixes == [
        "data-capture/ep-dev/shadow/2026/03/01/22/",
        "data-capture/ep-dev/shadow/2026/03/01/23/",
        "data-capture/ep-dev/shadow/2026/03/02/00/",
    ]
    with pytest.raises(DataError, match="longer than 31 days"):
        hour_prefixes("p", "e", "v", since - timedelta(days=40), since)


def test_read_captures_keeps_only_the_window_and_the_variant(s3: Any) -> None:
    base = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    lines = [
        capture_line(event_id=f"e{i}", inference_time=base + timedelta(minutes=20 * i), input_data=[i])
        for i in range(6)  # 10:00 .. 11:40
    ]
    write_capture_file(s3, CAPTURE_URI, "ep-dev", "candidate", base, lines[:3], "a")
    write_capture_file(s3, CAPTURE_URI, "ep-dev", "candidate", base + timedelta(hours=1), lines[3:], "b")
    write_capture_file(s3, CAPTURE_URI, "ep-dev", "stable", base, lines, "c")

    records = read_captures(
        s3, CAPTURE_URI, "ep-dev", "candidate", base + timedelta(minutes=30), base + timedelta(minutes=90)
    )

    assert [r.event_id for r in records] == ["e2", "e3", "e4"]
    assert all(r.variant == "candidate" for r in records)
    assert records[0].source.startswith(f"s3://{BUCKET}/data-capture/ep-dev/candidate/2026/03/01/10/")


def test_s3_uris_are_checked() -> None:
    assert parse_s3_uri("s3://bucket/a/b/") == ("bucket", "a/b")
    with pytest.raises(DataError, match="not an S3 URI"):
        parse_s3_uri("https://bucket/a")
