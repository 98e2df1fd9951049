#!/usr/bin/env python3
"""A downstream consumer of `coupon.issued.v1` in Python, as docs/TOPICS.md describes it.

It reads the topic with confluent-kafka and decodes every payload with nothing but the published
descriptor set (schema/descriptors/coupon-v1.binpb): no generated code, no `.proto` file. The
message type comes from the record's own `ce_dataschema` header, looked up in that set. Every
record's CloudEvents headers are checked against its payload, and each event is printed as one
JSON line: {"partition", "offset", "key", "headers": {ce_*...}, "event": <proto3 JSON>}.

Partitions are assigned explicitly and read from their start: no group is joined, nothing is
committed. The script stops once every partition is read to its end and at least `--expect`
distinct event ids were seen, and fails when that takes longer than `--timeout` seconds.

Exit status: 0 when every record passed, 1 when a record broke the contract (said on stderr),
2 on a timeout, 3 when its packages are missing.
"""

import argparse
import json
import pathlib
import sys
import time

REQUIREMENTS = "confluent-kafka==2.16.1 protobuf==6.33.6"
try:
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
    from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
except ImportError as missing:
    print(
        f"consume_issued.py: {missing}; run dev/test, which installs its packages "
        f"(pip install {REQUIREMENTS})",
        file=sys.stderr,
    )
    sys.exit(3)

DATASCHEMA_PREFIX = "urn:coupon:proto:"
EVENT_TYPE = "coupon.issued.v1"
DEFAULT_DESCRIPTORS = (
    pathlib.Path(__file__).resolve().parents[2] / "schema" / "descriptors" / "coupon-v1.binpb"
)


class ContractBroken(Exception):
    """A record whose headers, key or payload disagree with docs/TOPICS.md."""


def load_pool(path):
    """A descriptor pool holding every file of the published FileDescriptorSet at `path`."""
    files = descriptor_pb2.FileDescriptorSet.FromString(pathlib.Path(path).read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.AddSerializedFile(file.SerializeToString())
    return pool


def message_class(pool, dataschema):
    """The message class `ce_dataschema` names, built from the pool alone."""
    if not dataschema.startswith(DATASCHEMA_PREFIX):
        raise ContractBroken(f"ce_dataschema {dataschema!r} is not {DATASCHEMA_PREFIX}<message>")
    name = dataschema[len(DATASCHEMA_PREFIX):]
    try:
        descriptor = pool.FindMessageTypeByName(name)
    except KeyError:
        raise ContractBroken(f"ce_dataschema names {name}, unknown to the descriptor set") from None
    return message_factory.GetMessageClass(descriptor)


def headers_of(message):
    return {name: (value or b"").decode() for name, value in (message.headers() or [])}


def decode(pool, message):
    """One record as a JSON-ready dict, once its headers, key and payload agree."""
    headers = headers_of(message)
    ce_type = headers.get("ce_type")
    if ce_type != EVENT_TYPE:
        raise ContractBroken(f"ce_type {ce_type!r}, expected {EVENT_TYPE}")
    if headers.get("ce_specversion") != "1.0":
        raise ContractBroken(f"ce_specversion {headers.get('ce_specversion')!r}")
    cls = message_class(pool, headers.get("ce_dataschema", ""))
    if cls.DESCRIPTOR.full_name != "coupon.v1.CouponIssued":
        raise ContractBroken(f"{EVENT_TYPE} carries {cls.DESCRIPTOR.full_name}")
    event = cls.FromString(message.value() or b"")
    if headers.get("ce_id") != event.event_id:
        raise ContractBroken(f"ce_id {headers.get('ce_id')!r} != event_id {event.event_id!r}")
    if headers.get("ce_subject") != event.coupon_id:
        raise ContractBroken(
            f"ce_subject {headers.get('ce_subject')!r} != coupon_id {event.coupon_id!r}"
        )
    key = (message.key() or b"").decode()
    if key != f"{event.campaign_id}:{event.user_id}":
        raise ContractBroken(f"key {key!r} is not <campaign_id>:<user_id> of the event")
    return {
        "partition": message.partition(),
        "offset": message.offset(),
        "key": key,
        "headers": {k: v for k, v in headers.items() if k.startswith("ce_")},
        "event": json_format.MessageToDict(
            event, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        ),
    }


def assignment(consumer, topic):
    """Every partition of `topic` from its first offset, and where the non-empty ones end now."""
    metadata = consumer.list_topics(topic, timeout=10)
    described = metadata.topics.get(topic)
    if described is None or described.error is not None:
        raise KafkaException(described.error if described else f"no topic {topic}")
    partitions, ends = [], {}
    for partition in described.partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        partitions.append(TopicPartition(topic, partition, low))
        if high > low:
            ends[partition] = high
    return partitions, ends


def consume(args, pool, out):
    consumer = Consumer(
        {
            "bootstrap.servers": args.brokers,
            "group.id": "coupon-issued-python-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    deadline = time.monotonic() + args.timeout
    seen = set()
    try:
        partitions, ends = assignment(consumer, args.topic)
        consumer.assign(partitions)
        while ends or len(seen) < args.expect:
            if time.monotonic() > deadline:
                print(
                    f"consume_issued.py: {len(seen)} of {args.expect} events within "
                    f"{args.timeout} s ({len(ends)} partition(s) not read to their end)",
                    file=sys.stderr,
                )
                return 2
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error():
                # The end of a partition is a note, not an error; the client retries the rest.
                if message.error().code() != KafkaError._PARTITION_EOF:
                    print(f"consume_issued.py: {message.error()}", file=sys.stderr)
                continue
            line = decode(pool, message)
            seen.add(line["event"]["event_id"])
            out.write(json.dumps(line, sort_keys=True) + "\n")
            if message.offset() + 1 >= ends.get(message.partition(), sys.maxsize):
                del ends[message.partition()]
    finally:
        consumer.close()
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--brokers", default="127.0.0.1:9092")
    parser.add_argument("--topic", default=EVENT_TYPE)
    parser.add_argument("--descriptors", default=str(DEFAULT_DESCRIPTORS))
    parser.add_argument("--expect", type=int, default=0, help="distinct events to wait for")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    pool = load_pool(args.descriptors)
    try:
        status = consume(args, pool, sys.stdout)
    except ContractBroken as broken:
        print(f"consume_issued.py: {broken}", file=sys.stderr)
        return 1
    sys.stdout.flush()
    return status


if __name__ == "__main__":
    sys.exit(main())
