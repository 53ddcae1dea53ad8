"""Reader (and writer, for the sandbox and tests) of SageMaker data-capture files in S3.

With data capture on, SageMaker writes JSON lines under
``<DestinationS3Uri>/<endpoint-name>/<variant-name>/yyyy/mm/dd/hh/<file>.jsonl`` (UTC hour of the
inference), one object per captured request::

    {"captureData": {"endpointInput":  {"observedContentType": "text/csv", "mode": "INPUT",
                                        "data": "1,2,3", "encoding": "CSV"},
                     "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT",
                                        "data": "{\\"score\\": 0.1}", "encoding": "JSON"}},
     "eventMetadata": {"eventId": "4651a1bf-...", "inferenceId": "req-42",
                       "inferenceTime": "2021-09-27T03:47:25Z"},
     "eventVersion": "0"}

``encoding`` is ``CSV`` or ``JSON`` (the text as sent) for content types listed in the capture
config's ``CaptureContentTypeHeader``, else ``BASE64``. ``inferenceId`` is present only when the
caller passed ``InferenceId`` to InvokeEndpoint (:class:`rollback.client.SafePredictor` does, so
shadow captures pair reliably). Each variant, including a shadow variant, writes under its own
``<variant-name>`` directory; the shadow copy of a request carries the same request metadata, which
is how :mod:`rollback.verdicts.shadow` pairs them (by ``inferenceId``, else ``eventId``).

Listing is by hour prefix, so a one-hour window lists one S3 "directory", not the whole history.
Standard library + boto3 only: the drift Lambda imports this.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from rollback.runtime.errors import DataError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

#: Longest window :func:`read_captures` lists hour by hour (31 days of hourly prefixes).
MAX_WINDOW: Final = timedelta(days=31)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/prefix`` into (bucket, prefix without surrounding slashes)."""
    if not uri.startswith("s3://") or len(uri) <= 5:
        raise DataError(f"{uri!r} is not an S3 URI; expected s3://<bucket>/<prefix>")
    bucket, _, prefix = uri[5:].partition("/")
    if not bucket:
        raise DataError(f"{uri!r} has no bucket name; expected s3://<bucket>/<prefix>")
    return bucket, prefix.strip("/")


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"datetime {value!r} has no timezone; pass an aware UTC datetime")
    return value.astimezone(UTC)


def parse_time(text: str) -> datetime:
    """Parse an ISO-8601 capture timestamp (``Z`` or offset, with or without fractions) to UTC."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _number(cell: str) -> float | str:
    try:
        return float(cell)
    except ValueError:
        return cell


@dataclass(frozen=True)
class CapturedPayload:
    """One side (input or output) of a captured request, as SageMaker stored it."""

    content_type: str
    encoding: str
    data: str

    def raw(self) -> bytes:
        """The bytes the endpoint received or returned."""
        if self.encoding.upper() == "BASE64":
            return base64.b64decode(self.data)
        return self.data.encode("utf-8")

    def value(self) -> Any:
        """The payload parsed by content type: JSON -> object, CSV -> list of rows (numbers as float).

        A single CSV row comes back as that row (a list), which is what a one-record request is.
        Any other content type comes back as bytes.
        """
        ctype = self.content_type.split(";")[0].strip().lower()
        encoding = self.encoding.upper()
        if "json" in ctype or (encoding == "JSON" and "csv" not in ctype):
            return json.loads(self.raw().decode("utf-8"))
        if "csv" in ctype or encoding == "CSV":
            rows = [[_number(c.strip()) for c in row] for row in csv.reader(io.StringIO(self.raw().decode()))]
            rows = [r for r in rows if r]
            return rows[0] if len(rows) == 1 else rows
        return self.raw()


@dataclass(frozen=True)
class CaptureRecord:
    """One captured request of one variant."""

    event_id: str
    inference_id: str | None
    inference_time: datetime
    variant: str
    input: CapturedPayload | None
    output: CapturedPayload | None
    source: str = ""  # s3://bucket/key:line, for error messages

    @property
    def pair_key(self) -> str:
        """What pairs this record with the same request on another variant."""
        return self.inference_id or self.event_id


def _payload(obj: Any, where: str) -> CapturedPayload | None:
    if obj is None:
        return None
    if not isinstance(obj, dict) or "data" not in obj:
        raise DataError(f"{where}: capture payload must be an object with 'data'; got {obj!r:.80}")
    return CapturedPayload(
        content_type=str(obj.get("observedContentType", "")),
        encoding=str(obj.get("encoding", "BASE64")),
        data=str(obj["data"]),
    )


def parse_capture_line(line: str, *, variant: str, source: str = "") -> CaptureRecord:
    """Parse one JSON line of a data-capture file; :class:`DataError` names ``source`` when malformed."""
    where = source or "capture line"
    try:
        obj = json.loads(line)
        meta = obj["eventMetadata"]
        capture = obj["captureData"]
        inference_time = parse_time(meta["inferenceTime"])
        event_id = str(meta["eventId"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(
            f"{where}: not a SageMaker data-capture record ({exc}); expected captureData, "
            "eventMetadata.eventId and eventMetadata.inferenceTime"
        ) from None
    inference_id = meta.get("inferenceId")
    return CaptureRecord(
        event_id=event_id,
        inference_id=str(inference_id) if inference_id else None,
        inference_time=inference_time,
        variant=variant,
        input=_payload(capture.get("endpointInput"), where),
        output=_payload(capture.get("endpointOutput"), where),
        source=where,
    )


def variant_prefix(base_prefix: str, endpoint: str, variant: str) -> str:
    """``<prefix>/<endpoint>/<variant>/`` as SageMaker lays it out (no leading slash)."""
    parts = [p for p in (base_prefix.strip("/"), endpoint, variant) if p]
    return "/".join(parts) + "/"


def hour_prefixes(
    base_prefix: str, endpoint: str, variant: str, since: datetime, until: datetime
) -> list[str]:
    """The ``yyyy/mm/dd/hh/`` prefixes covering [since, until)."""
    since, until = _utc(since), _utc(until)
    if until <= since:
        raise ValueError(
            f"empty capture window: until {until.isoformat()} is not after since {since.isoformat()}"
        )
    if until - since > MAX_WINDOW:
        raise DataError(
            f"capture window {since.isoformat()} .. {until.isoformat()} is longer than {MAX_WINDOW.days} "
            "days; pass a later --since"
        )
    root = variant_prefix(base_prefix, endpoint, variant)
    hour = since.replace(minute=0, second=0, microsecond=0)
    out = []
    while hour < until:
        out.append(f"{root}{hour:%Y/%m/%d/%H}/")
        hour += timedelta(hours=1)
    return out


def read_captures(
    s3: S3Client,
    capture_uri: str,
    endpoint: str,
    variant: str,
    since: datetime,
    until: datetime,
    *,
    max_records: int | None = None,
) -> list[CaptureRecord]:
    """All captured requests of ``variant`` with ``since <= inferenceTime < until``, oldest first.

    ``capture_uri`` is the endpoint config's ``DestinationS3Uri``. ``max_records`` bounds memory
    (and Lambda time): the newest records are kept.
    """
    bucket, base = parse_s3_uri(capture_uri)
    since, until = _utc(since), _utc(until)
    records: list[CaptureRecord] = []
    paginator = s3.get_paginator("list_objects_v2")
    for prefix in hour_prefixes(base, endpoint, variant, since, until):
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
                for number, line in enumerate(body.splitlines(), start=1):
                    if not line.strip():
                        continue
                    record = parse_capture_line(line, variant=variant, source=f"s3://{bucket}/{key}:{number}")
                    if since <= record.inference_time < until:
                        records.append(record)
    records.sort(key=lambda r: r.inference_time)
    if max_records is not None and len(records) > max_records:
        records = records[-max_records:]
    return records


# -- writing (the sandbox emulates data capture with these; tests generate real-format files) ------


def encode_payload(data: bytes | str | Any, content_type: str, mode: str) -> dict[str, str]:
    """A capture payload as SageMaker writes it: CSV/JSON text for those content types, else BASE64."""
    if not isinstance(data, (bytes, str)):
        data = json.dumps(data)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    ctype = content_type.split(";")[0].strip().lower()
    if ctype == "text/csv":
        encoding, text = "CSV", raw.decode("utf-8")
    elif ctype == "application/json":
        encoding, text = "JSON", raw.decode("utf-8")
    else:
        encoding, text = "BASE64", base64.b64encode(raw).decode("ascii")
    return {"observedContentType": content_type, "mode": mode, "data": text, "encoding": encoding}


def capture_line(
    *,
    event_id: str,
    inference_time: datetime,
    input_data: Any,
    output_data: Any | None = None,
    input_content_type: str = "application/json",
    output_content_type: str = "application/json",
    inference_id: str | None = None,
) -> str:
    """One data-capture JSON line in SageMaker's format (eventVersion "0")."""
    capture: dict[str, Any] = {"endpointInput": encode_payload(input_data, input_content_type, "INPUT")}
    if output_data is not None:
        capture["endpointOutput"] = encode_payload(output_data, output_content_type, "OUTPUT")
    meta: dict[str, str] = {"eventId": event_id}
    if inference_id:
        meta["inferenceId"] = inference_id
    meta["inferenceTime"] = _utc(inference_time).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{_utc(inference_time).microsecond // 1000:03d}Z"
    )
    return json.dumps({"captureData": capture, "eventMetadata": meta, "eventVersion": "0"})


def capture_key(base_prefix: str, endpoint: str, variant: str, at: datetime, name: str) -> str:
    """The S3 key of a capture file written at ``at`` (hour directory) named ``name``."""
    return f"{variant_prefix(base_prefix, endpoint, variant)}{_utc(at):%Y/%m/%d/%H}/{name}.jsonl"


def write_capture_file(
    s3: S3Client, capture_uri: str, endpoint: str, variant: str, at: datetime, lines: Iterable[str], name: str
) -> str:
    """Write one JSON-lines capture file; returns its key."""
    bucket, base = parse_s3_uri(capture_uri)
    key = capture_key(base, endpoint, variant, at, name)
    s3.put_object(Bucket=bucket, Key=key, Body=("\n".join(lines) + "\n").encode("utf-8"))
    return key


def iter_values(records: Iterable[CaptureRecord], side: str = "input") -> Iterator[Any]:
    """Parsed payload values of one side of each record, skipping records without that side."""
    for record in records:
        payload = record.input if side == "input" else record.output
        if payload is None:
            continue
        try:
            yield payload.value()
        except (ValueError, UnicodeDecodeError) as exc:
            raise DataError(f"{record.source}: cannot parse captured {side} ({exc})") from None
